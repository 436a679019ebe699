import Foundation
import NIOSSL
import X509
import SidecarCore

/// The certificates and keys a TLS context is built from, read and checked: every file is named in the
/// error when it is missing, unreadable or not PEM, and a key that does not belong to its certificate is
/// refused before any handshake could present it.
package struct TLSMaterial {
    package struct Identity {
        package var chain: [NIOSSLCertificate]
        package var key: NIOSSLPrivateKey
        /// The leaf, parsed, for logs and `/certs`-style reporting.
        package var leaf: Certificate
    }

    package var identity: Identity?
    package var trustedCAs: [Certificate] = []
    package var trustedCAsNIO: [NIOSSLCertificate] = []
    package var sanMatchers: [SubjectAltNameMatcher] = []
    /// Whether a validation context is configured (peer certificates are asked for / checked).
    package var validates = false

    package struct LoadError: Error, CustomStringConvertible {
        package var description: String
    }

    /// A secret from a control plane that has not arrived: the context cannot be built yet (Envoy's "secrets not
    /// ready").
    package struct SecretNotReady: Error, CustomStringConvertible {
        package var reference: SDSSecretReference
        package var description: String { "SDS secret '\(reference.name)' has not arrived from the control plane" }
    }

    /// Reads everything `config` names, resolving SDS secrets from their files, or from `secrets` (what control
    /// planes delivered) for those that come over xDS.
    package static func load(_ config: TLSContextConfig,
                             secrets: [SDSSecretReference: SecretFile.Secret] = [:]) throws -> TLSMaterial {
        func secret(_ ref: SDSSecretReference) throws -> SecretFile.Secret {
            guard ref.file == nil else { return try SecretFile.load(ref) }
            guard let s = secrets[ref] else { throw SecretNotReady(reference: ref) }
            return s
        }
        var m = TLSMaterial()
        switch config.certificates {
        case .none:
            break
        case .inline(let certs):
            if let c = certs.first { m.identity = try loadIdentity(c) }
        case .sds(let ref):
            guard case .certificate(let c) = try secret(ref) else {
                throw LoadError(description: "SDS secret '\(ref.name)' \(Self.origin(ref)) is not a tls_certificate")
            }
            m.identity = try loadIdentity(c)
        }
        switch config.validation {
        case nil:
            break
        case .inline(let v):
            try m.apply(v)
            try m.requireTrustedCA()
        case .sds(let ref, let defaults):
            guard case .validation(let v) = try secret(ref) else {
                throw LoadError(description: "SDS secret '\(ref.name)' \(Self.origin(ref)) is not a validation_context")
            }
            // combined_validation_context: the static part's SAN matchers, the secret's CA (and its matchers).
            try m.apply(defaults)
            try m.apply(v)
            try m.requireTrustedCA()
        }
        return m
    }

    /// Where a secret came from, for errors.
    private static func origin(_ ref: SDSSecretReference) -> String {
        switch ref.source {
        case .file(let f): return "in \(f.path)"
        case .ads: return "from the ADS stream"
        case .grpc(let api): return "from the SDS stream to '\(api.clusterName)'"
        }
    }

    private mutating func apply(_ v: CertificateValidationConfig) throws {
        validates = true
        sanMatchers += v.matchSubjectAltNames
        if let ca = v.trustedCA {
            let pem = try Self.read(ca, what: "trusted_ca")
            do {
                trustedCAsNIO = try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))
                trustedCAs = try Self.parseCertificates(pem)
            } catch {
                throw LoadError(description: "trusted_ca \(ca.description) holds no valid PEM certificate: \(error)")
            }
            if trustedCAs.isEmpty { throw LoadError(description: "trusted_ca \(ca.description) holds no certificate") }
        }
    }

    private func requireTrustedCA() throws {
        if trustedCAs.isEmpty {
            throw LoadError(description: "a validation context needs trusted_ca (Pilotfish does not use the system roots)")
        }
    }

    package static func loadIdentity(_ c: TLSCertificateConfig) throws -> Identity {
        let chainPEM = try read(c.certificateChain, what: "certificate_chain")
        let keyPEM = try read(c.privateKey, what: "private_key")
        let chain: [NIOSSLCertificate]
        let parsed: [Certificate]
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(Array(chainPEM.utf8))
            parsed = try parseCertificates(chainPEM)
        } catch {
            throw LoadError(description: "certificate_chain \(c.certificateChain.description) is not a valid PEM certificate: \(error)")
        }
        guard let leaf = parsed.first, !chain.isEmpty else {
            throw LoadError(description: "certificate_chain \(c.certificateChain.description) holds no certificate")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
        } catch {
            throw LoadError(description: "private_key \(c.privateKey.description) is not a valid PEM private key: \(error)")
        }
        // The pair must belong together: compare the key's public half with the certificate's.
        if let x509Key = try? Certificate.PrivateKey(pemEncoded: keyPEM), x509Key.publicKey != leaf.publicKey {
            throw LoadError(description: "private_key \(c.privateKey.description) does not match the certificate in \(c.certificateChain.description)")
        }
        return Identity(chain: chain, key: key, leaf: leaf)
    }

    package static func parseCertificates(_ pem: String) throws -> [Certificate] {
        var out: [Certificate] = []
        var rest = pem[...]
        let begin = "-----BEGIN CERTIFICATE-----", end = "-----END CERTIFICATE-----"
        while let b = rest.range(of: begin), let e = rest.range(of: end, range: b.upperBound..<rest.endIndex) {
            out.append(try Certificate(pemEncoded: String(rest[b.lowerBound..<e.upperBound])))
            rest = rest[e.upperBound...]
        }
        return out
    }

    /// The text of a DataSource; a file is named in every error.
    package static func read(_ source: DataSourceConfig, what: String) throws -> String {
        switch source {
        case .inline(let s):
            return s
        case .file(let path):
            guard FileManager.default.fileExists(atPath: path) else {
                throw LoadError(description: "\(what) file \(path) does not exist")
            }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw LoadError(description: "\(what) file \(path) cannot be read (permissions?)")
            }
            guard let text = String(data: data, encoding: .utf8) else {
                throw LoadError(description: "\(what) file \(path) is not PEM text")
            }
            return text
        }
    }
}
