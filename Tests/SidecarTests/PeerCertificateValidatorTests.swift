import Crypto
import Foundation
import SwiftASN1
import Testing
import X509

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// Certificates made in-process so every validity and chain case is exact.
struct ValidatorTestPKI {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    struct Issued {
        let cert: Certificate
        let key: P256.Signing.PrivateKey
        var der: [UInt8] {
            var s = DER.Serializer()
            try! s.serialize(cert)
            return s.serializedBytes
        }
    }

    func ca(_ name: String, issuer: Issued? = nil, pathLength: Int? = nil, isCA: Bool = true) throws -> Issued {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName { OrganizationName("cluster.local"); CommonName(name) }
        let cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now - 86400, notValidAfter: now + 86400,
            issuer: issuer?.cert.subject ?? subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(isCA ? BasicConstraints.isCertificateAuthority(maxPathLength: pathLength) : .notCertificateAuthority)
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(issuer?.key ?? key))
        return Issued(cert: cert, key: key)
    }

    func leaf(_ uri: String, dns: [String] = [], issuer: Issued, notBefore: Date? = nil, notAfter: Date? = nil) throws -> Issued {
        let key = P256.Signing.PrivateKey()
        var names: [GeneralName] = [.uniformResourceIdentifier(uri)]
        names += dns.map { .dnsName($0) }
        let cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: notBefore ?? now - 3600, notValidAfter: notAfter ?? now + 3600,
            issuer: issuer.cert.subject, subject: try DistinguishedName { CommonName("workload") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                SubjectAlternativeNames(names)
            },
            issuerPrivateKey: .init(issuer.key))
        return Issued(cert: cert, key: key)
    }
}

private func uri(_ exact: String) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher(type: .URI, matcher: StringMatcher(kind: .exact(exact), ignoreCase: false))
}

@Suite struct PeerCertificateValidatorTests {
    let pki = ValidatorTestPKI()
    let client = "spiffe://cluster.local/ns/default/sa/client"

    @Test func acceptsALeafOfTheTrustedCAAndReportsItsIdentity() throws {
        let root = try pki.ca("root")
        let leaf = try pki.leaf(client, dns: ["client.default.svc"], issuer: root)
        let v = PeerCertificateValidator(trusted: [root.cert], sanMatchers: [uri(client)])
        let security = try v.validate(chain: [leaf.der], now: pki.now).get()
        #expect(security.peerCertificatePresented)
        #expect(security.peerURISANs == [client])
        #expect(security.peerDNSSANs == ["client.default.svc"])
        #expect(security.peerSubject == "CN=workload")
    }

    @Test func refusesAnotherCA() throws {
        let root = try pki.ca("root"), other = try pki.ca("root")  // same name, different key
        let leaf = try pki.leaf(client, issuer: other)
        let v = PeerCertificateValidator(trusted: [root.cert], sanMatchers: [])
        guard case .failure(.untrusted) = v.validate(chain: [leaf.der], now: pki.now) else {
            Issue.record("a leaf of another CA with the same name was accepted")
            return
        }
    }

    @Test func refusesExpiredAndNotYetValid() throws {
        let root = try pki.ca("root")
        let expired = try pki.leaf(client, issuer: root, notBefore: pki.now - 7200, notAfter: pki.now - 1)
        let early = try pki.leaf(client, issuer: root, notBefore: pki.now + 60, notAfter: pki.now + 7200)
        let v = PeerCertificateValidator(trusted: [root.cert], sanMatchers: [])
        #expect(v.validate(chain: [expired.der], now: pki.now) == .failure(.expired(notAfter: expired.cert.notValidAfter)))
        #expect(v.validate(chain: [early.der], now: pki.now) == .failure(.notYetValid(notBefore: early.cert.notValidBefore)))
    }

    @Test func sanMismatchIsItsOwnFailure() throws {
        let root = try pki.ca("root")
        let intruder = try pki.leaf("spiffe://cluster.local/ns/default/sa/intruder", issuer: root)
        let v = PeerCertificateValidator(trusted: [root.cert], sanMatchers: [uri(client)])
        let result = v.validate(chain: [intruder.der], now: pki.now)
        guard case .failure(let f) = result, f.isSANMismatch else {
            Issue.record("expected a SAN mismatch, got \(result)")
            return
        }
        // A prefix matcher admits the whole trust domain.
        let domain = PeerCertificateValidator(
            trusted: [root.cert],
            sanMatchers: [SubjectAltNameMatcher(type: .URI, matcher: StringMatcher(kind: .prefix("spiffe://cluster.local/"), ignoreCase: false))])
        #expect((try? domain.validate(chain: [intruder.der], now: pki.now).get()) != nil)
        // A DNS matcher does not match a URI SAN.
        let dnsOnly = PeerCertificateValidator(
            trusted: [root.cert], sanMatchers: [SubjectAltNameMatcher(type: .DNS, matcher: StringMatcher(kind: .exact(client), ignoreCase: false))])
        #expect((try? dnsOnly.validate(chain: [intruder.der], now: pki.now).get()) == nil)
    }

    @Test func followsPresentedIntermediatesAndChecksThem() throws {
        let root = try pki.ca("root")
        let intermediate = try pki.ca("intermediate", issuer: root)
        let leaf = try pki.leaf(client, issuer: intermediate)
        let v = PeerCertificateValidator(trusted: [root.cert], sanMatchers: [])
        #expect((try? v.validate(chain: [leaf.der, intermediate.der], now: pki.now).get()) != nil)
        // Without the intermediate there is no path.
        guard case .failure(.untrusted) = v.validate(chain: [leaf.der], now: pki.now) else {
            Issue.record("a leaf without its intermediate was accepted")
            return
        }
        // A root that allows no intermediate (pathLen 0) refuses the same chain.
        let strictRoot = try pki.ca("strict", pathLength: 0)
        let mid2 = try pki.ca("intermediate2", issuer: strictRoot)
        let leaf2 = try pki.leaf(client, issuer: mid2)
        let v2 = PeerCertificateValidator(trusted: [strictRoot.cert], sanMatchers: [])
        guard case .failure(.invalidIssuer) = v2.validate(chain: [leaf2.der, mid2.der], now: pki.now) else {
            Issue.record("pathLen 0 was not enforced")
            return
        }
    }

    @Test func aNonCACertificateCannotIssue() throws {
        let root = try pki.ca("root")
        let notCA = try pki.ca("pretender", issuer: root, isCA: false)
        let leaf = try pki.leaf(client, issuer: notCA)
        let v = PeerCertificateValidator(trusted: [root.cert], sanMatchers: [])
        guard case .failure(.invalidIssuer) = v.validate(chain: [leaf.der, notCA.der], now: pki.now) else {
            Issue.record("a leaf signed by a non-CA certificate was accepted")
            return
        }
    }

    @Test func emptyOrGarbageChains() {
        let v = PeerCertificateValidator(trusted: [], sanMatchers: [])
        #expect(v.validate(chain: [], now: Date()) == .failure(.noCertificate))
        guard case .failure(.unparsable) = v.validate(chain: [[0x30, 0x03, 0x01, 0x01, 0xff]], now: Date()) else {
            Issue.record("garbage was not refused as unparsable")
            return
        }
    }
}
