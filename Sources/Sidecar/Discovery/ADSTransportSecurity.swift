import GRPCNIOTransportCore
import GRPCNIOTransportHTTP2
import SidecarCore

/// The ADS cluster's `transport_socket` (UpstreamTlsContext) as the gRPC transport's TLS settings, with Envoy's
/// meaning: the client certificate of `tls_certificates` (mTLS), the server's chain checked against
/// `validation_context.trusted_ca` without a hostname check (Envoy checks names only when SAN matchers are given),
/// or not checked at all without a validation context; `sni` as the TLS server name. What the bootstrap refuses for
/// this cluster (SDS, SAN matchers, TLS parameters, ALPN) never gets here.
enum ADSTransportSecurity {
    static func make(_ tls: TLSContextConfig?) -> HTTP2ClientTransport.Posix.TransportSecurity {
        guard let tls else { return .plaintext }
        return .tls { config in
            if case .inline(let certs) = tls.certificates, let cert = certs.first {
                config.certificateChain = [source(cert.certificateChain)]
                config.privateKey = privateKey(cert.privateKey)
            }
            if case .inline(let validation)? = tls.validation, let ca = validation.trustedCA {
                config.trustRoots = .certificates([source(ca)])
                config.serverCertificateVerification = .noHostnameVerification
            } else {
                config.serverCertificateVerification = .noVerification
            }
        }
    }

    private static func source(_ data: DataSourceConfig) -> TLSConfig.CertificateSource {
        switch data {
        case .file(let path): return .file(path: path, format: .pem)
        case .inline(let text): return .bytes(Array(text.utf8), format: .pem)
        }
    }

    private static func privateKey(_ data: DataSourceConfig) -> TLSConfig.PrivateKeySource {
        switch data {
        case .file(let path): return .file(path: path, format: .pem)
        case .inline(let text): return .bytes(Array(text.utf8), format: .pem)
        }
    }
}
