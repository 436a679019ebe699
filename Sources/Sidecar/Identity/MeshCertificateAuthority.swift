import Crypto
import Foundation
import SwiftASN1
import X509

/// The mesh's root of trust: a self-signed ECDSA P-256 CA that issues SPIFFE workload certificates
/// (X509-SVIDs) directly, with no intermediate.
///
/// `basicConstraints` is `CA:TRUE, pathlen:0`: this CA only ever signs leaves, so a CA certificate under it can
/// only be a mistake or a forgery, and pathlen 0 makes BoringSSL, OpenSSL and swift-certificates refuse any chain
/// through one. (Istio's self-signed root leaves the path length open so it can later sign per-cluster
/// intermediates; a mesh that wants that needs a new root anyway, since the issuer here has no intermediate
/// mode.)
///
/// Times are whole seconds (certificates carry no more), and every time-dependent call takes `now` or explicit
/// validity bounds, so tests can mint expired, not-yet-valid or foreign certificates in-process.
public struct MeshCertificateAuthority: Sendable {
    public static let commonName = "Pilotfish mesh root CA"
    public static let certificateFile = "ca.crt"
    public static let privateKeyFile = "ca.key"
    /// Ten years: the root outlives many rotations of the 24-hour leaves it signs.
    public static let defaultValidity: TimeInterval = 3650 * 86400
    /// 24 hours, Istio's default workload certificate TTL (`DEFAULT_WORKLOAD_CERT_TTL`).
    public static let defaultWorkloadValidity: TimeInterval = 24 * 3600
    /// How far `notBefore` is back-dated, so a peer whose clock runs a little behind the issuer's does not
    /// reject a certificate minted a moment ago (Istio back-dates by its `clockSkewGracePeriod`, 2 min; we
    /// allow 5).
    public static let clockSkewAllowance: TimeInterval = 5 * 60

    public let certificate: Certificate
    public let certificatePEM: String
    /// PKCS#8 PEM of the CA's key; written 0600, never into a workload directory.
    public let privateKeyPEM: String
    let privateKey: Certificate.PrivateKey

    /// The trust domain named by the CA's subject `O=`, if it is one: the default for workloads it issues.
    public var trustDomain: String? {
        for rdn in certificate.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.organizationName {
                if let value = String(attribute.value), DNSName.subdomainProblem(value) == nil { return value }
            }
        }
        return nil
    }

    /// A new CA for `trustDomain`, valid from `now` − `clockSkewAllowance` for `validity`.
    public init(trustDomain: String, validity: TimeInterval = defaultValidity, now: Date = Date()) throws {
        guard validity > 0 else { throw IdentityError("CA validity must be positive (got \(validity) s)") }
        let now = Self.wholeSeconds(now)
        try self.init(
            trustDomain: trustDomain, notValidBefore: now - Self.clockSkewAllowance, notValidAfter: now + validity)
    }

    /// A new CA with explicit validity bounds (for tests that need an expired or not-yet-valid root).
    public init(trustDomain: String, notValidBefore: Date, notValidAfter: Date) throws {
        try SPIFFEID.validateTrustDomain(trustDomain)
        try Self.checkFitsOrganizationName(trustDomain)
        guard notValidBefore < notValidAfter else {
            throw IdentityError("CA notBefore (\(notValidBefore)) must be before notAfter (\(notValidAfter))")
        }
        let key = P256.Signing.PrivateKey()
        let privateKey = Certificate.PrivateKey(key)
        let name = try DistinguishedName {
            OrganizationName(trustDomain)
            CommonName(Self.commonName)
        }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: privateKey.publicKey)
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Self.randomSerialNumber(), publicKey: privateKey.publicKey,
            notValidBefore: Self.wholeSeconds(notValidBefore), notValidAfter: Self.wholeSeconds(notValidAfter),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
            issuerPrivateKey: privateKey)
        self.certificate = certificate
        self.certificatePEM = try certificate.serializeAsPEM().pemString + "\n"
        self.privateKeyPEM = key.pemRepresentation + "\n"
        self.privateKey = privateKey
    }

    /// Loads a CA from PEM text, checking it can issue: a CA certificate whose public key matches the key.
    /// `certificateSource` and `keySource` name the inputs (file paths) in errors.
    public init(
        certificatePEM: String, privateKeyPEM: String,
        certificateSource: String = "CA certificate", keySource: String = "CA key"
    ) throws {
        let certificate: Certificate
        do {
            let documents = try PEMDocument.parseMultiple(pemString: certificatePEM)
                .filter { $0.discriminator == Certificate.defaultPEMDiscriminator }
            guard documents.count == 1 else {
                throw IdentityError("holds \(documents.count) certificates; a CA file holds exactly one")
            }
            certificate = try Certificate(pemDocument: documents[0])
        } catch let error as IdentityError {
            throw IdentityError("'\(certificateSource)' \(error.message)")
        } catch {
            throw IdentityError("'\(certificateSource)' is not a PEM certificate: \(error)")
        }
        let privateKey: Certificate.PrivateKey
        do {
            privateKey = try Certificate.PrivateKey(pemEncoded: privateKeyPEM)
        } catch {
            throw IdentityError("'\(keySource)' is not a PEM private key: \(error)")
        }
        guard case .isCertificateAuthority = try certificate.extensions.basicConstraints else {
            throw IdentityError("'\(certificateSource)' is not a CA certificate (basicConstraints CA:TRUE missing)")
        }
        if let usage = try certificate.extensions.keyUsage, !usage.keyCertSign {
            throw IdentityError("'\(certificateSource)' may not sign certificates (keyUsage lacks keyCertSign)")
        }
        guard privateKey.publicKey == certificate.publicKey else {
            throw IdentityError("'\(keySource)' does not match the public key of '\(certificateSource)'")
        }
        self.certificate = certificate
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
        self.privateKey = privateKey
    }

    /// Loads `directory/ca.crt` and `directory/ca.key`.
    public static func load(fromDirectory directory: String) throws -> MeshCertificateAuthority {
        let certificatePath = (directory as NSString).appendingPathComponent(certificateFile)
        let keyPath = (directory as NSString).appendingPathComponent(privateKeyFile)
        return try MeshCertificateAuthority(
            certificatePEM: try readText(certificatePath), privateKeyPEM: try readText(keyPath),
            certificateSource: certificatePath, keySource: keyPath)
    }

    /// Writes `directory/ca.key` (0600) and `directory/ca.crt` (0644) atomically, creating `directory` (0700) if
    /// needed. Without `overwrite`, an existing CA file is an error: replacing the root silently would make
    /// every certificate it issued stop verifying.
    public func write(toDirectory directory: String, overwrite: Bool) throws {
        let certificatePath = (directory as NSString).appendingPathComponent(Self.certificateFile)
        let keyPath = (directory as NSString).appendingPathComponent(Self.privateKeyFile)
        if !overwrite {
            for path in [certificatePath, keyPath] where FileManager.default.fileExists(atPath: path) {
                throw IdentityError(
                    "'\(path)' already exists: refusing to replace the mesh CA, which would stop every certificate"
                        + " it issued from verifying (pass --force to replace it)")
            }
        }
        try AtomicFiles.createDirectory(directory, mode: 0o700)
        // Key first: the certificate is the commit point, as for workload files.
        try AtomicFiles.replace([
            AtomicFiles.File(path: keyPath, contents: privateKeyPEM, mode: 0o600),
            AtomicFiles.File(path: certificatePath, contents: certificatePEM, mode: 0o644),
        ])
    }

    /// Issues a workload certificate valid from `now` − `clockSkewAllowance` until `now` + `validity`.
    ///
    /// Refuses to issue past the CA's own `notAfter` (a leaf that outlives its root just fails later, far from
    /// the cause) or while the CA is not yet valid.
    public func issueWorkload(
        spiffeID: SPIFFEID, dnsNames: [String] = [], validity: TimeInterval = defaultWorkloadValidity,
        now: Date = Date()
    ) throws -> IssuedIdentity {
        guard validity > 0 else { throw IdentityError("workload validity must be positive (got \(validity) s)") }
        let now = Self.wholeSeconds(now)
        if now < certificate.notValidBefore {
            throw IdentityError("the CA is not valid until \(Self.timestamp(certificate.notValidBefore))")
        }
        if now + validity > certificate.notValidAfter {
            throw IdentityError(
                "the CA expires at \(Self.timestamp(certificate.notValidAfter)), before the workload certificate"
                    + " would (\(Self.timestamp(now + validity))): shorten the validity or rotate the CA")
        }
        return try issueWorkload(
            spiffeID: spiffeID, dnsNames: dnsNames, notValidBefore: now - Self.clockSkewAllowance,
            notValidAfter: now + validity)
    }

    /// Issues a workload certificate with explicit validity bounds, unchecked against the CA's own (for tests
    /// that need expired or not-yet-valid leaves).
    ///
    /// The certificate is an X509-SVID (spiffe/spiffe `standards/X509-SVID.md`): exactly one URI SAN, the SPIFFE
    /// ID, plus any DNS SANs; `CA:FALSE`; key usage `digitalSignature` only (ECDHE needs nothing else; the
    /// SVID standard forbids `keyCertSign`/`cRLSign` on leaves, and `keyAgreement` would only serve static-ECDH
    /// suites nobody negotiates); EKU serverAuth + clientAuth, since every sidecar is both. The subject is
    /// `O=<trust domain>` (plus `OU=<namespace>, CN=<service account>` for Kubernetes-form IDs), so it is never
    /// empty and the SAN need not be critical: swift-certificates' `RFC5280Policy` refuses unhandled critical
    /// extensions, and SPIRE issues the same shape.
    public func issueWorkload(
        spiffeID: SPIFFEID, dnsNames: [String] = [], notValidBefore: Date, notValidAfter: Date
    ) throws -> IssuedIdentity {
        try Self.checkFitsOrganizationName(spiffeID.trustDomain)
        for name in dnsNames {
            if let problem = DNSName.sanProblem(name) {
                throw IdentityError("invalid DNS name '\(name)': \(problem) (a lower-case DNS name, '*.' allowed)")
            }
        }
        guard notValidBefore < notValidAfter else {
            throw IdentityError(
                "workload notBefore (\(Self.timestamp(notValidBefore))) must be before notAfter"
                    + " (\(Self.timestamp(notValidAfter)))")
        }
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let subject = try DistinguishedName {
            OrganizationName(spiffeID.trustDomain)
            if let namespace = spiffeID.namespace, let serviceAccount = spiffeID.serviceAccount {
                OrganizationalUnitName(namespace)
                CommonName(serviceAccount)
            }
        }
        let authorityKeyID =
            try certificate.extensions.subjectKeyIdentifier?.keyIdentifier
            ?? SubjectKeyIdentifier(hash: certificate.publicKey).keyIdentifier
        let names: [GeneralName] = [.uniformResourceIdentifier(spiffeID.description)] + dnsNames.map { .dnsName($0) }
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([.serverAuth, .clientAuth])
            SubjectKeyIdentifier(hash: publicKey)
            AuthorityKeyIdentifier(keyIdentifier: authorityKeyID)
            SubjectAlternativeNames(names)
        }
        let leaf = try Certificate(
            version: .v3, serialNumber: Self.randomSerialNumber(), publicKey: publicKey,
            notValidBefore: Self.wholeSeconds(notValidBefore), notValidAfter: Self.wholeSeconds(notValidAfter),
            issuer: certificate.subject, subject: subject, extensions: extensions, issuerPrivateKey: privateKey)
        return IssuedIdentity(
            spiffeID: spiffeID, certificate: leaf, certificatePEM: try leaf.serializeAsPEM().pemString + "\n",
            privateKeyPEM: key.pemRepresentation + "\n")
    }

    /// A positive 128-bit random serial (RFC 5280 4.1.2.2: positive, non-zero, at most 20 octets; the CA/B
    /// Forum asks for at least 64 random bits). `SerialNumber` holds the unsigned magnitude, and its DER
    /// encoding adds the zero octet that keeps a set top bit positive.
    static func randomSerialNumber() -> Certificate.SerialNumber {
        var generator = SystemRandomNumberGenerator()
        while true {
            let random = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            if random.contains(where: { $0 != 0 }) { return Certificate.SerialNumber(bytes: random) }
        }
    }

    /// The trust domain becomes the subject's `O=`, whose upper bound (RFC 5280 appendix A,
    /// `ub-organization-name`) is 64 characters.
    static func checkFitsOrganizationName(_ trustDomain: String) throws {
        guard trustDomain.utf8.count <= 64 else {
            throw IdentityError(
                "trust domain '\(trustDomain)' is longer than 64 characters, the most an X.509 O= may hold")
        }
    }

    static func wholeSeconds(_ date: Date) -> Date {
        Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down))
    }

    static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601)
    }

    static func readText(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw IdentityError("cannot read '\(path)'")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
