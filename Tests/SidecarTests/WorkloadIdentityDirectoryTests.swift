import Crypto
import Foundation
import Testing
import X509

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

@Suite struct WorkloadIdentityDirectoryTests {
    /// The public key of the certificate in `certificatePEM` equals that of the key in `keyPEM`.
    func pairMatches(certificatePEM: String, keyPEM: String) throws -> Bool {
        let certificate = try Certificate(pemEncoded: certificatePEM)
        let key = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
        return certificate.publicKey == Certificate.PublicKey(key.publicKey)
    }

    /// The base64 `data` value for `key` in a Secret manifest, decoded.
    func secretData(_ yaml: String, _ key: String) -> String? {
        for line in yaml.split(separator: "\n") where line.hasPrefix("  \(key): ") {
            let encoded = String(line.dropFirst(key.count + 4))
            return Data(base64Encoded: encoded).map { String(decoding: $0, as: UTF8.self) }
        }
        return nil
    }

    @Test func writesLeafKeyRootAndSecret() async throws {
        try await withTemporaryDirectory { root in
            let directory = root + "/identity"
            let ca = try MeshCertificateAuthority(trustDomain: "cluster.local")
            let issued = try ca.issueWorkload(spiffeID: try kubernetesID("shop", "cart"))
            try WorkloadIdentityDirectory.write(
                issued, caCertificatePEM: ca.certificatePEM, secretName: "pilotfish-identity-cart", namespace: "shop",
                toDirectory: directory)

            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
                == ["ca.crt", "secret.yaml", "tls.crt", "tls.key"])
            #expect(try fileMode(directory + "/tls.key") == 0o600)
            #expect(try fileMode(directory + "/secret.yaml") == 0o600)
            #expect(try fileMode(directory + "/tls.crt") == 0o644)
            #expect(try fileMode(directory + "/ca.crt") == 0o644)
            let certificatePEM = try readFile(directory + "/tls.crt")
            #expect(certificatePEM == issued.certificatePEM)
            #expect(certificatePEM.components(separatedBy: "-----BEGIN CERTIFICATE-----").count == 2)
            #expect(try readFile(directory + "/tls.key") == issued.privateKeyPEM)
            #expect(try readFile(directory + "/ca.crt") == ca.certificatePEM)
            #expect(try pairMatches(certificatePEM: certificatePEM, keyPEM: try readFile(directory + "/tls.key")))

            let secret = try readFile(directory + "/secret.yaml")
            #expect(secret.hasPrefix("""
                apiVersion: v1
                kind: Secret
                metadata:
                  name: "pilotfish-identity-cart"
                  namespace: "shop"
                type: kubernetes.io/tls
                data:

                """))
            #expect(secretData(secret, "tls.crt") == issued.certificatePEM)
            #expect(secretData(secret, "tls.key") == issued.privateKeyPEM)
            #expect(secretData(secret, "ca.crt") == ca.certificatePEM)
        }
    }

    @Test func reissuingIntoTheSameDirectoryLeavesAMatchingPair() async throws {
        try await withTemporaryDirectory { directory in
            let ca = try MeshCertificateAuthority(trustDomain: "cluster.local")
            var serials: [Certificate.SerialNumber] = []
            for _ in 0..<3 {
                let issued = try ca.issueWorkload(spiffeID: try kubernetesID())
                try WorkloadIdentityDirectory.write(
                    issued, caCertificatePEM: ca.certificatePEM, secretName: "web", namespace: "default",
                    toDirectory: directory)
                let certificatePEM = try readFile(directory + "/tls.crt")
                #expect(try pairMatches(certificatePEM: certificatePEM, keyPEM: try readFile(directory + "/tls.key")))
                serials.append(try Certificate(pemEncoded: certificatePEM).serialNumber)
                #expect(try fileMode(directory + "/tls.key") == 0o600)
            }
            #expect(Set(serials).count == 3)
            // No temporaries left behind by the atomic replacements.
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
                == ["ca.crt", "secret.yaml", "tls.crt", "tls.key"])
        }
    }

    /// A reader polling while identities rotate must only ever see whole files, and, reading the certificate
    /// first, a key at least as new: a new certificate is renamed into place only after its key.
    @Test func aPollingReaderNeverSeesAPartialFileOrAnOlderKeyThanTheCertificate() async throws {
        try await withTemporaryDirectory { directory in
            let ca = try MeshCertificateAuthority(trustDomain: "cluster.local")
            let identities = try (0..<20).map { _ in try ca.issueWorkload(spiffeID: try kubernetesID()) }
            let generation = Dictionary(uniqueKeysWithValues: identities.enumerated().flatMap { index, identity in
                [(identity.certificatePEM, index), (identity.privateKeyPEM, index)]
            })
            try WorkloadIdentityDirectory.write(
                identities[0], caCertificatePEM: ca.certificatePEM, secretName: "web", namespace: "default",
                toDirectory: directory)

            let counter = ReadCounter()
            let reader = Task.detached { () -> (reads: Int, problems: [String]) in
                var problems: [String] = []
                var reads = 0
                while !Task.isCancelled {
                    defer { counter.increment() }
                    guard let certificatePEM = try? readFile(directory + "/tls.crt"),
                        let keyPEM = try? readFile(directory + "/tls.key")
                    else {
                        problems.append("a file was missing")
                        continue
                    }
                    reads += 1
                    guard let certificateGeneration = generation[certificatePEM],
                        let keyGeneration = generation[keyPEM]
                    else {
                        problems.append("read a partial file")
                        continue
                    }
                    if keyGeneration < certificateGeneration {
                        problems.append("key \(keyGeneration) older than certificate \(certificateGeneration)")
                    }
                }
                return (reads, problems)
            }
            for identity in identities.dropFirst() {
                // Let the reader poll at least once between rotations, however the two get scheduled.
                let seen = counter.value
                while counter.value == seen { await Task.yield() }
                try WorkloadIdentityDirectory.write(
                    identity, caCertificatePEM: ca.certificatePEM, secretName: "web", namespace: "default",
                    toDirectory: directory)
            }
            reader.cancel()
            let (reads, problems) = await reader.value
            #expect(reads >= identities.count - 1)
            #expect(problems.count == 0, "first problems: \(problems.prefix(5))")
            #expect(try pairMatches(
                certificatePEM: try readFile(directory + "/tls.crt"), keyPEM: try readFile(directory + "/tls.key")))
            #expect(try readFile(directory + "/tls.crt") == identities.last!.certificatePEM)
        }
    }

    @Test func invalidSecretNamesAreRefusedBeforeAnythingIsWritten() async throws {
        try await withTemporaryDirectory { directory in
            let ca = try MeshCertificateAuthority(trustDomain: "cluster.local")
            let issued = try ca.issueWorkload(spiffeID: try kubernetesID())
            #expect {
                try WorkloadIdentityDirectory.write(
                    issued, caCertificatePEM: ca.certificatePEM, secretName: "Web_Identity", namespace: "default",
                    toDirectory: directory)
            } throws: { error in
                (error as? IdentityError)?.message.hasPrefix("invalid Secret name 'Web_Identity'") ?? false
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
        }
    }
}

/// How many polls the reader has made, shared with the writer.
private final class ReadCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0

    var value: Int { lock.withLock { count } }

    func increment() { lock.withLock { count += 1 } }
}
