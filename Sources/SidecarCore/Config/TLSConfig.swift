/// `envoy.transport_sockets.tls`: the TLS settings of a filter chain (`DownstreamTlsContext`) or a cluster
/// (`UpstreamTlsContext`), as decoded from Envoy v3 config. Files are named here and read when the proxy
/// starts (and again on rotation for SDS), so a missing file is an error that names its path.
public struct TLSContextConfig: Sendable, Equatable {
    public enum Side: Sendable, Equatable { case downstream, upstream }

    public var side: Side
    /// The certificate(s) this side presents: static files, or an SDS secret read from a file.
    public var certificates: CertificateSource
    /// How the peer's certificate is checked; nil means it is not asked for (server) or not checked (client).
    public var validation: ValidationSource?
    public var alpnProtocols: [String] = []
    public var params = TLSParams()
    /// Downstream: fail the handshake unless the client presents a valid certificate.
    public var requireClientCertificate = false
    /// Upstream: the SNI sent to the server.
    public var sni: String?
}

extension TLSContextConfig {
    /// The SDS secrets this context reads (certificate first, then validation context).
    public var secretReferences: [SDSSecretReference] {
        var refs: [SDSSecretReference] = []
        if case .sds(let r) = certificates { refs.append(r) }
        if case .sds(let r, _) = validation { refs.append(r) }
        return refs
    }

    /// The secrets a control plane delivers (not files).
    public var remoteSecretReferences: [SDSSecretReference] { secretReferences.filter { $0.file == nil } }
}

/// Where a certificate/key pair comes from.
public enum CertificateSource: Sendable, Equatable {
    case none
    case inline([TLSCertificateConfig])
    case sds(SDSSecretReference)
}

/// Where the validation context comes from. Istio's `combined_validation_context` is a static part (SAN
/// matchers) merged with a secret (the trusted CA) from SDS.
public enum ValidationSource: Sendable, Equatable {
    case inline(CertificateValidationConfig)
    case sds(SDSSecretReference, defaults: CertificateValidationConfig)
}

/// `envoy.config.core.v3.DataSource`: a file, or the bytes inline.
public enum DataSourceConfig: Sendable, Equatable {
    case file(String)
    case inline(String)

    /// What an error message should call it.
    package var description: String {
        switch self {
        case .file(let p): return p
        case .inline: return "<inline>"
        }
    }
}

/// `TlsCertificate`: a chain and its key.
public struct TLSCertificateConfig: Sendable, Equatable {
    public var certificateChain: DataSourceConfig
    public var privateKey: DataSourceConfig
}

/// `CertificateValidationContext`.
public struct CertificateValidationConfig: Sendable, Equatable {
    public var trustedCA: DataSourceConfig?
    public var matchSubjectAltNames: [SubjectAltNameMatcher] = []
}

/// `SubjectAltNameMatcher`: a SAN of one type that must match.
public struct SubjectAltNameMatcher: Sendable, Equatable {
    public enum SANType: String, Sendable, CaseIterable {
        case DNS, URI, EMAIL, IP_ADDRESS
    }
    public var type: SANType
    public var matcher: StringMatcher
}

/// `TlsParameters`.
public struct TLSParams: Sendable, Equatable {
    public enum Version: String, Sendable, CaseIterable, Comparable {
        case TLS_AUTO, TLSv1_0, TLSv1_1, TLSv1_2, TLSv1_3

        package var rank: Int { Self.allCases.firstIndex(of: self)! }
        public static func < (a: Version, b: Version) -> Bool { a.rank < b.rank }
    }
    public var minimumVersion: Version = .TLS_AUTO
    public var maximumVersion: Version = .TLS_AUTO
    /// OpenSSL cipher names for TLS 1.2 and below (TLS 1.3 suites are fixed, as in Envoy/BoringSSL).
    public var cipherSuites: [String] = []
    public var ecdhCurves: [String] = []
}

/// A secret named in `tls_certificate_sds_secret_configs` / `validation_context_sds_secret_config`, and where it
/// comes from: a file (`sds_config.path_config_source`, re-read when it or the files it names change), the ADS
/// stream (`ads: {}`) or a SecretDiscoveryService stream of its own (`api_config_source`).
public struct SDSSecretReference: Sendable, Equatable, Hashable {
    public var name: String
    public var source: ConfigSource

    public init(name: String, source: ConfigSource) {
        self.name = name
        self.source = source
    }

    /// The SDS file, for a secret served from one.
    public var file: FileConfigSource? { source.file }
}
