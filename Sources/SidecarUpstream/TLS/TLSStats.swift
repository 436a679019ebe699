import NIOSSL
import SidecarCore

/// Envoy's `ssl.*` counters of a listener (`listener.<address>.ssl.*`) or a cluster (`cluster.<name>.ssl.*`).
package struct TLSStats: Sendable {
    package let connectionError, handshake, sessionReused, noCertificate: Int
    package let failVerifyNoCert, failVerifyError, failVerifySAN, failVerifyCertHash: Int
    /// `ssl.versions.<version>`, shown once non-zero (Envoy creates them on first use).
    package let versionTLS10, versionTLS11, versionTLS12, versionTLS13: Int
    /// Connections refused because the context's secrets from a control plane had not arrived:
    /// `listener.<address>.server_ssl_socket_factory.downstream_context_secrets_not_ready`,
    /// `cluster.<name>.client_ssl_socket_factory.upstream_context_secrets_not_ready` (Envoy has them for every TLS
    /// context).
    package let secretsNotReady: Int

    /// `scope` is "listener.0.0.0.0_443" or "cluster.backend"; `family`/`label` as the scope's other stats.
    package init(scope: String, familyPrefix: String, label: (String, String), registry r: StatsRegistry) {
        func reg(_ s: String) -> Int {
            r.register("\(scope).ssl.\(s)", .counter, family: "\(familyPrefix).ssl.\(s)", labels: [label])
        }
        connectionError = reg("connection_error")
        handshake = reg("handshake")
        sessionReused = reg("session_reused")
        noCertificate = reg("no_certificate")
        failVerifyNoCert = reg("fail_verify_no_cert")
        failVerifyError = reg("fail_verify_error")
        failVerifySAN = reg("fail_verify_san")
        failVerifyCertHash = reg("fail_verify_cert_hash")
        func version(_ v: String) -> Int {
            r.register("\(scope).ssl.versions.\(v)", .counter, family: "\(familyPrefix).ssl.versions.\(v)", labels: [label], lazy: true)
        }
        versionTLS10 = version("TLSv1")
        versionTLS11 = version("TLSv1.1")
        versionTLS12 = version("TLSv1.2")
        versionTLS13 = version("TLSv1.3")
        let factory = familyPrefix == "listener"
            ? "server_ssl_socket_factory.downstream_context_secrets_not_ready"
            : "client_ssl_socket_factory.upstream_context_secrets_not_ready"
        secretsNotReady = r.register("\(scope).\(factory)", .counter, family: "\(familyPrefix).\(factory)", labels: [label])
    }

    /// The counter of a negotiated version.
    package func slot(for version: TLSVersion?) -> Int? {
        switch version {
        case .tlsv1?: return versionTLS10
        case .tlsv11?: return versionTLS11
        case .tlsv12?: return versionTLS12
        case .tlsv13?: return versionTLS13
        case nil: return nil
        }
    }

    /// The counter a failed peer validation goes to.
    package func slot(for failure: PeerCertificateValidator.Failure) -> Int {
        switch failure {
        case .noCertificate: return failVerifyNoCert
        case .sanMismatch: return failVerifySAN
        case .unparsable, .expired, .notYetValid, .untrusted, .invalidIssuer, .unhandledCriticalExtension:
            return failVerifyError
        }
    }
}
