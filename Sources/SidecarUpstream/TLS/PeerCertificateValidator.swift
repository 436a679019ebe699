import Foundation
import NIOSSL
import SwiftASN1
import X509
import SidecarCore

/// Checks the certificate chain a TLS peer presented against the trusted CAs and the SAN matchers of a
/// `CertificateValidationContext`, with swift-certificates. It runs inside the handshake (NIOSSL's custom
/// verification callback), synchronously, and says *why* a chain failed, so each refusal is logged and
/// counted as Envoy counts it (`ssl.fail_verify_error` / `ssl.fail_verify_san`).
///
/// The path is built from the leaf through the presented intermediates to a trusted certificate: every
/// signature is checked, every certificate must be inside its validity period, every issuer must be a CA
/// (basicConstraints, keyCertSign when keyUsage is present, pathLen honoured), and a critical extension
/// this code does not understand fails the chain, as RFC 5280 requires.
package struct PeerCertificateValidator: Sendable {
    package enum Failure: Error, Equatable, CustomStringConvertible {
        case noCertificate
        case unparsable(String)
        case expired(notAfter: Date)
        case notYetValid(notBefore: Date)
        case untrusted(issuer: String)
        case invalidIssuer(String)
        case unhandledCriticalExtension(String)
        case sanMismatch(presented: [String])

        package var description: String {
            switch self {
            case .noCertificate: return "peer did not present a certificate"
            case .unparsable(let e): return "peer certificate cannot be parsed: \(e)"
            case .expired(let d): return "certificate expired (not after \(Self.format(d)))"
            case .notYetValid(let d): return "certificate not yet valid (not before \(Self.format(d)))"
            case .untrusted(let issuer): return "certificate is not signed by a trusted CA (issuer \(issuer))"
            case .invalidIssuer(let why): return "certificate chain is invalid: \(why)"
            case .unhandledCriticalExtension(let oid): return "certificate has an unsupported critical extension \(oid)"
            case .sanMismatch(let sans):
                return "certificate SANs \(sans.isEmpty ? "(none)" : sans.joined(separator: ", ")) match no match_typed_subject_alt_names entry"
            }
        }

        /// Envoy's counter for this failure.
        package var isSANMismatch: Bool { if case .sanMismatch = self { return true } else { return false } }

        private static func format(_ d: Date) -> String {
            let f = ISO8601DateFormatter()
            return f.string(from: d)
        }
    }

    package let trusted: [Certificate]
    package let sanMatchers: [SubjectAltNameMatcher]
    /// Longest chain searched: leaf + intermediates + root (BoringSSL's default depth is 100; 10 is plenty
    /// for a mesh and bounds the work a hostile peer can cause).
    package static let maxDepth = 10

    private static let understood: Set<ASN1ObjectIdentifier> = [
        .X509ExtensionID.basicConstraints, .X509ExtensionID.keyUsage, .X509ExtensionID.extendedKeyUsage,
        .X509ExtensionID.subjectAlternativeName, .X509ExtensionID.subjectKeyIdentifier,
        .X509ExtensionID.authorityKeyIdentifier,
    ]

    /// Validates the chain as the TLS handshake presents it (leaf first). A certificate that cannot be
    /// re-encoded fails the chain rather than being skipped, which would shift the leaf.
    package func validate(presented certificates: [NIOSSLCertificate], now: Date) -> Result<ConnectionSecurity, Failure> {
        var ders: [[UInt8]] = []
        ders.reserveCapacity(certificates.count)
        for c in certificates {
            do {
                ders.append(try c.toDERBytes())
            } catch {
                return .failure(.unparsable("\(error)"))
            }
        }
        return validate(chain: ders, now: now)
    }

    /// Validates `chain` (DER, leaf first, as presented) at `now`. Returns what the handshake established.
    package func validate(chain: [[UInt8]], now: Date) -> Result<ConnectionSecurity, Failure> {
        guard !chain.isEmpty else { return .failure(.noCertificate) }
        var presented: [Certificate] = []
        presented.reserveCapacity(chain.count)
        do {
            for der in chain.prefix(Self.maxDepth) { presented.append(try Certificate(derEncoded: der)) }
        } catch {
            return .failure(.unparsable("\(error)"))
        }
        let leaf = presented[0]
        if let failure = checkPath(leaf: leaf, intermediates: Array(presented.dropFirst()), now: now) {
            return .failure(failure)
        }
        var security = ConnectionSecurity()
        security.peerCertificatePresented = true
        security.peerSubject = Self.rfc2253(leaf.subject)
        var all: [String] = []
        if let sans = try? leaf.extensions.subjectAlternativeNames {
            for name in sans {
                switch name {
                case .uniformResourceIdentifier(let u):
                    security.peerURISANs.append(u)
                    all.append("URI:\(u)")
                case .dnsName(let d):
                    security.peerDNSSANs.append(d)
                    all.append("DNS:\(d)")
                case .rfc822Name(let e):
                    all.append("email:\(e)")
                default:
                    break
                }
            }
        }
        if !sanMatchers.isEmpty && !matchesSAN(leaf) { return .failure(.sanMismatch(presented: all)) }
        return .success(security)
    }

    /// Envoy's rule: the certificate passes if any of its SANs of a listed type matches that entry.
    private func matchesSAN(_ leaf: Certificate) -> Bool {
        guard let sans = try? leaf.extensions.subjectAlternativeNames else { return false }
        for m in sanMatchers {
            for name in sans {
                switch (m.type, name) {
                case (.URI, .uniformResourceIdentifier(let u)) where m.matcher.matches(u): return true
                case (.DNS, .dnsName(let d)) where Self.dnsMatches(m.matcher, d): return true
                case (.EMAIL, .rfc822Name(let e)) where m.matcher.matches(e): return true
                case (.IP_ADDRESS, .ipAddress(let ip)) where m.matcher.matches(Self.ipString(ip.bytes)): return true
                default: continue
                }
            }
        }
        return false
    }

    /// A DNS SAN `*.example.com` matches an exact matcher `foo.example.com`, as in Envoy's DNS SAN matching.
    private static func dnsMatches(_ matcher: StringMatcher, _ san: String) -> Bool {
        if matcher.matches(san) { return true }
        if san.hasPrefix("*."), case .exact(let want) = matcher.kind, let dot = want.firstIndex(of: ".") {
            let suffix = want[dot...]
            return !want[..<dot].isEmpty && suffix.caseInsensitiveCompare(san.dropFirst()) == .orderedSame
        }
        return false
    }

    private static func ipString(_ bytes: ArraySlice<UInt8>) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        if bytes.count == 16, let a = try? SocketAddressFromBytes.ipv6(Array(bytes)) { return a }
        return ""
    }

    private func checkPath(leaf: Certificate, intermediates: [Certificate], now: Date) -> Failure? {
        var current = leaf
        var depth = 0
        var pool = intermediates
        while true {
            if let f = Self.checkTimeAndExtensions(current, now: now) { return f }
            // A trusted certificate that *is* the current one (a pinned self-signed peer) or signed it ends the path.
            if trusted.contains(current) { return nil }
            if let root = trusted.first(where: { $0.subject == current.issuer && $0.publicKey.isValidSignature(current.signature, for: current) }) {
                if let f = Self.checkIssuer(root, below: depth) { return f }
                if let f = Self.checkTimeAndExtensions(root, now: now) { return f }
                return nil
            }
            depth += 1
            guard depth < Self.maxDepth,
                let i = pool.firstIndex(where: { $0.subject == current.issuer && $0.publicKey.isValidSignature(current.signature, for: current) })
            else {
                return .untrusted(issuer: Self.rfc2253(current.issuer))
            }
            let issuer = pool.remove(at: i)
            if let f = Self.checkIssuer(issuer, below: depth - 1) { return f }
            current = issuer
        }
    }

    private static func checkTimeAndExtensions(_ c: Certificate, now: Date) -> Failure? {
        if now < c.notValidBefore { return .notYetValid(notBefore: c.notValidBefore) }
        if now > c.notValidAfter { return .expired(notAfter: c.notValidAfter) }
        for ext in c.extensions where ext.critical && !understood.contains(ext.oid) {
            return .unhandledCriticalExtension("\(ext.oid)")
        }
        return nil
    }

    /// `issuer` signs a certificate with `below` CA certificates under it on the path.
    private static func checkIssuer(_ issuer: Certificate, below: Int) -> Failure? {
        switch try? issuer.extensions.basicConstraints {
        case .isCertificateAuthority(let maxPathLength):
            if let maxPathLength, below > maxPathLength {
                return .invalidIssuer("\(rfc2253(issuer.subject)) allows a path length of \(maxPathLength)")
            }
        default:
            return .invalidIssuer("\(rfc2253(issuer.subject)) is not a CA")
        }
        if let ku = try? issuer.extensions.keyUsage, !ku.keyCertSign {
            return .invalidIssuer("\(rfc2253(issuer.subject)) may not sign certificates (keyUsage)")
        }
        return nil
    }

    /// "CN=x,O=y": the order OpenSSL's RFC 2253 printing (and so Envoy) uses, most specific first.
    package static func rfc2253(_ name: DistinguishedName) -> String {
        name.reversed().map { rdn in
            rdn.map { attr -> String in
                let key: String
                switch attr.type {
                case .RDNAttributeType.commonName: key = "CN"
                case .RDNAttributeType.organizationName: key = "O"
                case .RDNAttributeType.organizationalUnitName: key = "OU"
                case .RDNAttributeType.countryName: key = "C"
                case .RDNAttributeType.stateOrProvinceName: key = "ST"
                case .RDNAttributeType.localityName: key = "L"
                default: key = "\(attr.type)"
                }
                return "\(key)=\(attr.value)"
            }.joined(separator: "+")
        }.joined(separator: ",")
    }
}

/// IPv6 bytes as text, for IP SAN matching.
package enum SocketAddressFromBytes {
    package static func ipv6(_ b: [UInt8]) throws -> String {
        var addr = in6_addr()
        withUnsafeMutableBytes(of: &addr) { $0.copyBytes(from: b) }
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &addr, &buf, socklen_t(buf.count)) != nil else { return "" }
        return String(cString: buf)
    }
}
