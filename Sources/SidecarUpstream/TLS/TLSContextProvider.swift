import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import SidecarCore

/// The TLS context of one filter chain or cluster. New connections take the current `Snapshot`; a
/// rotation (SDS file change) builds a new one and swaps it in, so connections already up keep the
/// context they started with and are never dropped.
package final class TLSContextProvider: Sendable {
    /// Everything a connection needs to run its handshake. Immutable; shared by all connections that
    /// started while it was current.
    package final class Snapshot: Sendable {
        package let context: NIOSSLContext
        /// The same context offering ALPN `http/1.1` alone, for a cluster whose connections must sometimes speak
        /// HTTP/1.1 (`UpstreamHTTPProtocolOptions.needsHTTP1OnlyALPN`); nil otherwise.
        package let http1Context: NIOSSLContext?
        package let validator: PeerCertificateValidator?
        /// The leaf's serial, to tell in logs which certificate a rotation installed.
        package let certificateSerial: String?

        package init(context: NIOSSLContext, http1Context: NIOSSLContext? = nil, validator: PeerCertificateValidator?,
                     certificateSerial: String?) {
            self.context = context
            self.http1Context = http1Context
            self.validator = validator
            self.certificateSerial = certificateSerial
        }
    }

    package let config: TLSContextConfig
    /// "listener <name> filter chain <name>" or "cluster <name>", for logs.
    package let owner: String
    private let current = NIOLockedValueBox<Snapshot?>(nil)
    /// Successful loads (the first one included): Envoy's `ssl_context_update_by_sds` for SDS contexts.
    package let loads = ManagedCounter()

    /// Reads nothing yet: `load()` does, when the server starts (or `--mode validate` checks the files).
    /// Also build a context offering ALPN `http/1.1` alone (`Snapshot.http1Context`).
    private let http1Alternative: Bool

    package init(config: TLSContextConfig, owner: String, http1Alternative: Bool = false) {
        self.config = config
        self.owner = owner
        self.http1Alternative = http1Alternative
    }

    /// A filter chain's DownstreamTlsContext.
    package convenience init(_ config: TLSContextConfig, listener: Listener, chain: FilterChain) {
        self.init(config: config, owner: "listener '\(listener.name)' filter chain '\(chain.name)'")
    }

    /// A cluster's UpstreamTlsContext. When it names no ALPN, the cluster's protocol chooses the offer, as Envoy's
    /// fallback does: `h2` for HTTP/2, `h2,http/1.1` for `auto_config`.
    package convenience init(_ config: TLSContextConfig, cluster: Cluster) {
        var config = config
        let options = cluster.httpProtocolOptions
        if config.alpnProtocols.isEmpty { config.alpnProtocols = options.defaultALPN }
        self.init(config: config, owner: "cluster '\(cluster.name)'", http1Alternative: options.needsHTTP1OnlyALPN)
    }

    /// The context new connections use. The server loads every provider before it accepts a connection, except
    /// those whose secrets come from a control plane: see `readySnapshot`.
    package var snapshot: Snapshot {
        guard let s = current.withLockedValue({ $0 }) else { preconditionFailure("\(owner): TLS context used before load()") }
        return s
    }

    /// The context new connections use, nil while its secrets from a control plane have not arrived (a connection
    /// then fails, as Envoy's not-ready TLS socket does).
    package var readySnapshot: Snapshot? { current.withLockedValue { $0 } }

    /// Reads the files (and the `secrets` control planes delivered) and swaps in a new context (first load, or
    /// rotation). On failure the current one stays.
    @discardableResult
    package func load(secrets: [SDSSecretReference: SecretFile.Secret] = [:]) throws -> Snapshot {
        let s = try Self.build(config, owner: owner, http1Alternative: http1Alternative, secrets: secrets)
        current.withLockedValue { $0 = s }
        loads.increment()
        return s
    }

    /// Builds the context `secrets` would give, without swapping it in: checks a secret update.
    package func check(secrets: [SDSSecretReference: SecretFile.Secret]) throws {
        _ = try Self.build(config, owner: owner, http1Alternative: http1Alternative, secrets: secrets)
    }

    /// SDS secrets this context reads: files to watch for rotation, or secrets a control plane delivers.
    package var secretReferences: [SDSSecretReference] {
        config.secretReferences
    }

    package static func build(_ config: TLSContextConfig, owner: String, http1Alternative: Bool = false,
                              secrets: [SDSSecretReference: SecretFile.Secret] = [:]) throws -> Snapshot {
        let m = try TLSMaterial.load(config, secrets: secrets)
        var tls: TLSConfiguration
        switch config.side {
        case .downstream:
            guard let id = m.identity else {
                throw TLSMaterial.LoadError(description: "\(owner): a downstream TLS context needs a certificate")
            }
            tls = .makeServerConfiguration(certificateChain: id.chain.map { .certificate($0) }, privateKey: .privateKey(id.key))
            if m.validates {
                tls.certificateVerification = config.requireClientCertificate ? .noHostnameVerification : .optionalVerification
            } else {
                tls.certificateVerification = .none
            }
            // Envoy's server defaults: TLS 1.2 to 1.3.
            tls.minimumTLSVersion = Self.version(config.params.minimumVersion) ?? .tlsv12
            tls.maximumTLSVersion = Self.version(config.params.maximumVersion) ?? .tlsv13
        case .upstream:
            tls = .makeClientConfiguration()
            if let id = m.identity {
                tls.certificateChain = id.chain.map { .certificate($0) }
                tls.privateKey = .privateKey(id.key)
            }
            tls.certificateVerification = m.validates ? .noHostnameVerification : .none
            // Envoy's client defaults: TLS 1.2 only (1.3 when tls_maximum_protocol_version says so).
            tls.minimumTLSVersion = Self.version(config.params.minimumVersion) ?? .tlsv12
            tls.maximumTLSVersion = Self.version(config.params.maximumVersion) ?? .tlsv12
        }
        if !m.trustedCAsNIO.isEmpty {
            // Used for the CA names a server sends; the chain itself is checked by PeerCertificateValidator.
            tls.trustRoots = .certificates(m.trustedCAsNIO)
        }
        tls.applicationProtocols = config.alpnProtocols
        if !config.params.cipherSuites.isEmpty {
            tls.cipherSuites = config.params.cipherSuites.joined(separator: ":")
        }
        if !config.params.ecdhCurves.isEmpty {
            tls.curves = try config.params.ecdhCurves.map { name in
                switch name {
                case "X25519": return .x25519
                case "P-256": return .secp256r1
                case "P-384": return .secp384r1
                case "P-521": return .secp521r1
                case "X25519MLKEM768": return .x25519_MLKEM768
                default: throw TLSMaterial.LoadError(description: "\(owner): ecdh_curves entry '\(name)' is not supported (X25519, P-256, P-384, P-521, X25519MLKEM768)")
                }
            }
        }
        tls.renegotiationSupport = .none
        let context: NIOSSLContext
        var http1Context: NIOSSLContext?
        do {
            context = try NIOSSLContext(configuration: tls)
            if http1Alternative {
                tls.applicationProtocols = ["http/1.1"]
                http1Context = try NIOSSLContext(configuration: tls)
            }
        } catch {
            throw TLSMaterial.LoadError(description: "\(owner): cannot build the TLS context: \(Self.explain(error, config))")
        }
        let validator = m.validates ? PeerCertificateValidator(trusted: m.trustedCAs, sanMatchers: m.sanMatchers) : nil
        let serial = m.identity.map { "\($0.leaf.serialNumber)" }
        return Snapshot(context: context, http1Context: http1Context, validator: validator, certificateSerial: serial)
    }

    private static func version(_ v: TLSParams.Version) -> TLSVersion? {
        switch v {
        case .TLS_AUTO: return nil
        case .TLSv1_0: return .tlsv1
        case .TLSv1_1: return .tlsv11
        case .TLSv1_2: return .tlsv12
        case .TLSv1_3: return .tlsv13
        }
    }

    private static func explain(_ error: Error, _ config: TLSContextConfig) -> String {
        if !config.params.cipherSuites.isEmpty, "\(error)".contains("CIPHER") || "\(error)".contains("cipher") {
            return "tls_params.cipher_suites [\(config.params.cipherSuites.joined(separator: ", "))] contains a cipher BoringSSL does not know (\(error))"
        }
        return "\(error)"
    }
}
