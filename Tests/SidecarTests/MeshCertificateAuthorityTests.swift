import Crypto
import Foundation
import SwiftASN1
import Testing
@_spi(FixedExpiryValidationTime) import X509

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

@Suite struct MeshCertificateAuthorityTests {
    let now = identityTestNow

    /// Validates `leaf` against `root` at `time` with RFC 5280 chain building and policy, as a peer would.
    func verify(_ leaf: Certificate, anchoredAt root: Certificate, at time: Date) async -> Bool {
        var verifier = Verifier(rootCertificates: CertificateStore([root])) {
            RFC5280Policy(fixedExpiryValidationTime: time)
        }
        switch await verifier.validate(leaf: leaf, intermediates: CertificateStore()) {
        case .validCertificate(let chain):
            return chain.count == 2 && chain.first == leaf && chain.last == root
        case .couldNotValidate:
            return false
        }
    }

    @Test func rootHasTheMeshCAProfile() throws {
        let ca = try MeshCertificateAuthority(trustDomain: "mesh.example", validity: 3650 * 86400, now: now)
        let cert = ca.certificate
        #expect(cert.subject.description == "CN=Pilotfish mesh root CA,O=mesh.example")
        #expect(cert.issuer == cert.subject)
        #expect(ca.trustDomain == "mesh.example")
        #expect(cert.notValidBefore == now - 300)
        #expect(cert.notValidAfter == now + 3650 * 86400)
        #expect(try cert.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: 0))
        #expect(cert.extensions[oid: .X509ExtensionID.basicConstraints]?.critical == true)
        #expect(try cert.extensions.keyUsage == KeyUsage(keyCertSign: true, cRLSign: true))
        #expect(cert.extensions[oid: .X509ExtensionID.keyUsage]?.critical == true)
        #expect(try cert.extensions.subjectKeyIdentifier == SubjectKeyIdentifier(hash: cert.publicKey))
        #expect(cert.signatureAlgorithm == .ecdsaWithSHA256)
        #expect(P256.Signing.PublicKey(cert.publicKey) != nil)
        #expect(cert.publicKey.isValidSignature(cert.signature, for: cert))
        #expect(ca.privateKeyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----\n"))
    }

    @Test func workloadCertificateIsAnX509SVIDForExactlyItsID() throws {
        let ca = try MeshCertificateAuthority(trustDomain: "cluster.local", now: now)
        let id = try kubernetesID("shop", "checkout")
        let issued = try ca.issueWorkload(
            spiffeID: id, dnsNames: ["checkout.shop.svc", "*.checkout.shop.svc"], validity: 24 * 3600, now: now)
        let leaf = issued.certificate
        let sans = try #require(try leaf.extensions.subjectAlternativeNames)
        #expect(Array(sans) == [
            .uniformResourceIdentifier("spiffe://cluster.local/ns/shop/sa/checkout"),
            .dnsName("checkout.shop.svc"), .dnsName("*.checkout.shop.svc"),
        ])
        #expect(CertificateSummary(leaf).spiffeID == id)
        #expect(leaf.subject.description == "CN=checkout,OU=shop,O=cluster.local")
        #expect(leaf.issuer == ca.certificate.subject)
        #expect(try leaf.extensions.basicConstraints == .notCertificateAuthority)
        #expect(leaf.extensions[oid: .X509ExtensionID.basicConstraints]?.critical == true)
        #expect(try leaf.extensions.keyUsage == KeyUsage(digitalSignature: true))
        #expect(leaf.extensions[oid: .X509ExtensionID.keyUsage]?.critical == true)
        #expect(try leaf.extensions.extendedKeyUsage == ExtendedKeyUsage([.serverAuth, .clientAuth]))
        #expect(
            try leaf.extensions.authorityKeyIdentifier?.keyIdentifier
                == ca.certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
        #expect(leaf.notValidBefore == now - 5 * 60)
        #expect(leaf.notValidAfter == now + 24 * 3600)
        #expect(issued.certificatePEM.components(separatedBy: "BEGIN CERTIFICATE").count == 2)
    }

    @Test func serialsArePositiveRandom128BitNumbers() throws {
        let ca = try MeshCertificateAuthority(trustDomain: "cluster.local", now: now)
        var serials: Set<Certificate.SerialNumber> = []
        for _ in 0..<32 {
            let serial = try ca.issueWorkload(spiffeID: try kubernetesID(), now: now).certificate.serialNumber
            // The unsigned magnitude: non-zero, at most 128 bits.
            #expect((1...16).contains(serial.bytes.count))
            #expect(serial.bytes.first != 0)
            serials.insert(serial)
        }
        #expect(serials.count == 32)
    }

    @Test func privateKeyMatchesTheCertificate() throws {
        let ca = try MeshCertificateAuthority(trustDomain: "cluster.local", now: now)
        let issued = try ca.issueWorkload(spiffeID: try kubernetesID(), now: now)
        let key = try P256.Signing.PrivateKey(pemRepresentation: issued.privateKeyPEM)
        #expect(Certificate.PublicKey(key.publicKey) == issued.certificate.publicKey)
        let message = Array("hello mesh".utf8)
        let signature = try key.signature(for: message)
        let certificateKey = try #require(P256.Signing.PublicKey(issued.certificate.publicKey))
        #expect(certificateKey.isValidSignature(signature, for: message))
    }

    @Test func workloadCertificateChainsToItsCA() async throws {
        let ca = try MeshCertificateAuthority(trustDomain: "cluster.local", now: now)
        let issued = try ca.issueWorkload(spiffeID: try kubernetesID(), dnsNames: ["web.default.svc"], now: now)
        #expect(await verify(issued.certificate, anchoredAt: ca.certificate, at: now))
        #expect(await verify(issued.certificate, anchoredAt: ca.certificate, at: now + 23 * 3600))
    }

    @Test func certificateFromAnotherCAFailsVerification() async throws {
        let ours = try MeshCertificateAuthority(trustDomain: "cluster.local", now: now)
        // Same subject as ours, so only the signature and key identifiers tell them apart.
        let theirs = try MeshCertificateAuthority(trustDomain: "cluster.local", now: now)
        #expect(ours.certificate.subject == theirs.certificate.subject)
        let foreign = try theirs.issueWorkload(spiffeID: try kubernetesID(), now: now)
        #expect(await verify(foreign.certificate, anchoredAt: ours.certificate, at: now) == false)
        #expect(await verify(foreign.certificate, anchoredAt: theirs.certificate, at: now))
    }

    @Test func expiredAndNotYetValidCertificatesFailVerification() async throws {
        let ca = try MeshCertificateAuthority(trustDomain: "cluster.local", now: now)
        let expired = try ca.issueWorkload(
            spiffeID: try kubernetesID(), notValidBefore: now - 7200, notValidAfter: now - 3600)
        let future = try ca.issueWorkload(
            spiffeID: try kubernetesID(), notValidBefore: now + 3600, notValidAfter: now + 7200)
        #expect(expired.certificate.notValidAfter == now - 3600)
        #expect(await verify(expired.certificate, anchoredAt: ca.certificate, at: now) == false)
        #expect(await verify(future.certificate, anchoredAt: ca.certificate, at: now) == false)
        #expect(await verify(future.certificate, anchoredAt: ca.certificate, at: now + 5400))

        let expiredCA = try MeshCertificateAuthority(
            trustDomain: "cluster.local", notValidBefore: now - 7200, notValidAfter: now - 60)
        let underExpiredCA = try expiredCA.issueWorkload(
            spiffeID: try kubernetesID(), notValidBefore: now - 3600, notValidAfter: now + 3600)
        #expect(await verify(underExpiredCA.certificate, anchoredAt: expiredCA.certificate, at: now) == false)
    }

    @Test func issuingPastTheCAsLifetimeIsRefused() throws {
        let ca = try MeshCertificateAuthority(trustDomain: "cluster.local", validity: 86400, now: now)
        #expect {
            try ca.issueWorkload(spiffeID: try kubernetesID(), validity: 2 * 86400, now: now)
        } throws: { error in
            (error as? IdentityError)?.message.hasPrefix("the CA expires at 2030-01-02T00:00:00Z") ?? false
        }
        #expect {
            try ca.issueWorkload(spiffeID: try kubernetesID(), now: now - 86400)
        } throws: { error in
            (error as? IdentityError)?.message == "the CA is not valid until 2029-12-31T23:55:00Z"
        }
        #expect(throws: IdentityError("workload validity must be positive (got 0.0 s)")) {
            try ca.issueWorkload(spiffeID: try kubernetesID(), validity: 0, now: now)
        }
    }

    @Test func badDNSNamesAndTrustDomainsAreRefusedByName() throws {
        let ca = try MeshCertificateAuthority(trustDomain: "cluster.local", now: now)
        #expect {
            try ca.issueWorkload(spiffeID: try kubernetesID(), dnsNames: ["web.default.svc", "Web_1"], now: now)
        } throws: { error in
            (error as? IdentityError)?.message.hasPrefix("invalid DNS name 'Web_1'") ?? false
        }
        #expect {
            try MeshCertificateAuthority(trustDomain: "mesh_example", now: now)
        } throws: { error in
            (error as? IdentityError)?.message.hasPrefix("invalid trust domain 'mesh_example'") ?? false
        }
        let long = String(repeating: "a", count: 60) + ".example"
        #expect {
            try MeshCertificateAuthority(trustDomain: long, now: now)
        } throws: { error in
            (error as? IdentityError)?.message.contains("longer than 64 characters") ?? false
        }
        #expect {
            try ca.issueWorkload(spiffeID: try SPIFFEID(parsing: "spiffe://\(long)/workload"), now: now)
        } throws: { error in
            (error as? IdentityError)?.message
                == "trust domain '\(long)' is longer than 64 characters, the most an X.509 O= may hold"
        }
    }

    @Test func caSurvivesAWriteAndLoadAndRefusesToBeOverwritten() async throws {
        try await withTemporaryDirectory { root in
            let directory = root + "/mesh-ca"
            let ca = try MeshCertificateAuthority(trustDomain: "cluster.local", now: now)
            try ca.write(toDirectory: directory, overwrite: false)
            #expect(try fileMode(directory + "/ca.key") == 0o600)
            #expect(try fileMode(directory + "/ca.crt") == 0o644)
            #expect(try fileMode(directory) == 0o700)

            let loaded = try MeshCertificateAuthority.load(fromDirectory: directory)
            #expect(loaded.certificate == ca.certificate)
            #expect(loaded.trustDomain == "cluster.local")
            let issued = try loaded.issueWorkload(spiffeID: try kubernetesID(), now: now)
            #expect(await verify(issued.certificate, anchoredAt: ca.certificate, at: now))

            let replacement = try MeshCertificateAuthority(trustDomain: "cluster.local", now: now)
            #expect {
                try replacement.write(toDirectory: directory, overwrite: false)
            } throws: { error in
                let message = (error as? IdentityError)?.message ?? ""
                return message.hasPrefix("'\(directory)/ca.crt' already exists") && message.contains("--force")
            }
            #expect(try MeshCertificateAuthority.load(fromDirectory: directory).certificate == ca.certificate)
            try replacement.write(toDirectory: directory, overwrite: true)
            #expect(try MeshCertificateAuthority.load(fromDirectory: directory).certificate == replacement.certificate)
            #expect(try fileMode(directory + "/ca.key") == 0o600)
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == ["ca.crt", "ca.key"])
        }
    }

    @Test func loadingRefusesAKeyFromAnotherCAOrALeafAsCA() async throws {
        try await withTemporaryDirectory { directory in
            let ca = try MeshCertificateAuthority(trustDomain: "cluster.local", now: now)
            let other = try MeshCertificateAuthority(trustDomain: "cluster.local", now: now)
            #expect {
                try MeshCertificateAuthority(
                    certificatePEM: ca.certificatePEM, privateKeyPEM: other.privateKeyPEM,
                    certificateSource: "\(directory)/ca.crt", keySource: "\(directory)/ca.key")
            } throws: { error in
                (error as? IdentityError)?.message
                    == "'\(directory)/ca.key' does not match the public key of '\(directory)/ca.crt'"
            }
            let leaf = try ca.issueWorkload(spiffeID: try kubernetesID(), now: now)
            #expect {
                try MeshCertificateAuthority(certificatePEM: leaf.certificatePEM, privateKeyPEM: leaf.privateKeyPEM)
            } throws: { error in
                (error as? IdentityError)?.message.contains("is not a CA certificate") ?? false
            }
            #expect {
                try MeshCertificateAuthority.load(fromDirectory: directory + "/missing")
            } throws: { error in
                (error as? IdentityError)?.message == "cannot read '\(directory)/missing/ca.crt'"
            }
        }
    }

    @Test func opensslVerifiesTheChainAndShowsTheURISAN() async throws {
        try await withTemporaryDirectory { directory in
            let ca = try MeshCertificateAuthority(trustDomain: "cluster.local")
            let issued = try ca.issueWorkload(spiffeID: try kubernetesID("shop", "cart"), dnsNames: ["cart.shop.svc"])
            try WorkloadIdentityDirectory.write(
                issued, caCertificatePEM: ca.certificatePEM, secretName: "cart-identity", namespace: "shop",
                toDirectory: directory)

            let verified = try runOpenSSL([
                "verify", "-CAfile", directory + "/ca.crt", "-purpose", "sslserver", directory + "/tls.crt",
            ])
            #expect(verified.status == 0, "\(verified.output)")
            #expect(verified.output.contains("tls.crt: OK"))
            let asClient = try runOpenSSL([
                "verify", "-CAfile", directory + "/ca.crt", "-purpose", "sslclient", directory + "/tls.crt",
            ])
            #expect(asClient.status == 0, "\(asClient.output)")

            let text = try runOpenSSL(["x509", "-noout", "-text", "-in", directory + "/tls.crt"])
            #expect(text.status == 0)
            #expect(text.output.contains("URI:spiffe://cluster.local/ns/shop/sa/cart, DNS:cart.shop.svc"))
            #expect(text.output.contains("CA:FALSE"))
            #expect(!text.output.contains("Negative"))  // openssl marks a negative serial so
            #expect(text.output.contains("TLS Web Server Authentication, TLS Web Client Authentication"))

            let root = try runOpenSSL(["x509", "-noout", "-text", "-in", directory + "/ca.crt"])
            #expect(root.output.contains("CA:TRUE, pathlen:0"))
            #expect(root.output.contains("Certificate Sign, CRL Sign"))

            // The key belongs to the certificate, by openssl's reading of both files.
            let pub1 = try runOpenSSL(["x509", "-noout", "-pubkey", "-in", directory + "/tls.crt"])
            let pub2 = try runOpenSSL(["pkey", "-pubout", "-in", directory + "/tls.key"])
            #expect(pub1.status == 0 && pub2.status == 0)
            #expect(pub1.output == pub2.output)
        }
    }

    @Test func opensslRejectsACertificateFromAnotherCA() async throws {
        try await withTemporaryDirectory { directory in
            let ours = try MeshCertificateAuthority(trustDomain: "cluster.local")
            let theirs = try MeshCertificateAuthority(trustDomain: "cluster.local")
            let foreign = try theirs.issueWorkload(spiffeID: try kubernetesID())
            try WorkloadIdentityDirectory.write(
                foreign, caCertificatePEM: ours.certificatePEM, secretName: "x", namespace: "default",
                toDirectory: directory)
            let verified = try runOpenSSL(["verify", "-CAfile", directory + "/ca.crt", directory + "/tls.crt"])
            #expect(verified.status != 0)
            #expect(verified.output.contains("error"))
        }
    }
}
