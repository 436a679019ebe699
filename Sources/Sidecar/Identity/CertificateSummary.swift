import Foundation
import SwiftASN1
import X509

/// What `sidecar certs inspect` prints: the fields that decide whether a mesh handshake works (who, issued by
/// whom, for which SPIFFE ID, until when, CA or not), without `openssl x509 -text`'s page of hex.
public struct CertificateSummary: Sendable {
    public let certificate: Certificate

    public init(_ certificate: Certificate) {
        self.certificate = certificate
    }

    /// Every certificate in PEM text (a leaf, a root, or a bundle), in file order. `source` names the input in
    /// errors.
    public static func parse(pem: String, source: String) throws -> [CertificateSummary] {
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: pem)
        } catch {
            throw IdentityError("'\(source)' is not PEM: \(error)")
        }
        let certificates = documents.filter { $0.discriminator == Certificate.defaultPEMDiscriminator }
        if certificates.isEmpty { throw IdentityError("'\(source)' holds no PEM certificate") }
        return try certificates.enumerated().map { index, document in
            do {
                return CertificateSummary(try Certificate(pemDocument: document))
            } catch {
                throw IdentityError("certificate \(index + 1) in '\(source)' does not parse: \(error)")
            }
        }
    }

    /// Subject alternative names in OpenSSL's notation (`URI:spiffe://…`, `DNS:…`, `IP Address:…`).
    public var subjectAlternativeNames: [String] {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return [] }
        return names.map(Self.describe)
    }

    /// The SPIFFE ID, if the certificate is a well-formed X509-SVID leaf: exactly one URI SAN, and it parses.
    public var spiffeID: SPIFFEID? {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return nil }
        let uris = names.compactMap { name -> String? in
            if case .uniformResourceIdentifier(let uri) = name { return uri }
            return nil
        }
        guard uris.count == 1 else { return nil }
        return try? SPIFFEID(parsing: uris[0])
    }

    public var isCertificateAuthority: Bool {
        guard case .isCertificateAuthority = try? certificate.extensions.basicConstraints else { return false }
        return true
    }

    /// Aligned `field: value` lines; `now` marks an expired or not-yet-valid certificate.
    public func lines(now: Date = Date()) -> [String] {
        var fields: [(String, String)] = [
            ("subject", certificate.subject.description),
            ("issuer", certificate.issuer.description),
            ("serial", certificate.serialNumber.bytes.map { String(format: "%02x", $0) }.joined(separator: ":")),
            ("not before", MeshCertificateAuthority.timestamp(certificate.notValidBefore)
                + (now < certificate.notValidBefore ? " (not yet valid)" : "")),
            ("not after", MeshCertificateAuthority.timestamp(certificate.notValidAfter)
                + (now > certificate.notValidAfter ? " (expired)" : "")),
            ("CA", caDescription),
        ]
        let sans = subjectAlternativeNames
        fields.append(("SANs", sans.isEmpty ? "none" : sans.joined(separator: ", ")))
        if let id = spiffeID { fields.append(("SPIFFE ID", id.description)) }
        if let usage = try? certificate.extensions.keyUsage { fields.append(("key usage", usage.description)) }
        if let usage = try? certificate.extensions.extendedKeyUsage {
            fields.append(("extended key usage", usage.map(\.description).joined(separator: ", ")))
        }
        let width = fields.map(\.0.count).max()! + 1
        return fields.map { name, value in
            (name + ":").padding(toLength: width, withPad: " ", startingAt: 0) + " " + value
        }
    }

    private var caDescription: String {
        switch try? certificate.extensions.basicConstraints {
        case .isCertificateAuthority(let maxPathLength):
            return "yes" + (maxPathLength.map { " (path length \($0))" } ?? "")
        case .notCertificateAuthority:
            return "no"
        case nil:
            return "no (no basicConstraints)"
        }
    }

    private static func describe(_ name: GeneralName) -> String {
        switch name {
        case .uniformResourceIdentifier(let uri): return "URI:\(uri)"
        case .dnsName(let dns): return "DNS:\(dns)"
        case .rfc822Name(let email): return "email:\(email)"
        case .ipAddress(let address): return "IP Address:\(describeIP(Array(address.bytes)))"
        case .directoryName(let dn): return "DirName:\(dn)"
        case .registeredID(let oid): return "Registered ID:\(oid)"
        case .otherName: return "othername:<unsupported>"
        case .x400Address: return "X400Name:<unsupported>"
        case .ediPartyName: return "EdiPartyName:<unsupported>"
        }
    }

    private static func describeIP(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        if bytes.count == 16 {
            return stride(from: 0, to: 16, by: 2)
                .map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
                .joined(separator: ":")
        }
        return bytes.map { String(format: "%02x", $0) }.joined()
    }
}
