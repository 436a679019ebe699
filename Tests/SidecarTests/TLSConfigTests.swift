import Foundation
import NIOPosix
import Testing
import X509

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// DownstreamTlsContext / UpstreamTlsContext decoding, file loading errors, and SDS file rotation.
@Suite struct TLSConfigTests {
    let pki = ValidatorTestPKI()

    /// A temp dir with a CA, a server identity and a second identity of the same CA.
    final class Files {
        let dir: String
        init() throws {
            dir = NSTemporaryDirectory() + "pf-tls-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: dir) }
        func write(_ name: String, _ text: String) throws {
            // As a rotation would: a new file renamed over the old one.
            try text.write(toFile: "\(dir)/\(name).tmp", atomically: false, encoding: .utf8)
            _ = rename("\(dir)/\(name).tmp", "\(dir)/\(name)")
        }
    }

    func pem(_ c: Certificate) throws -> String { try c.serializeAsPEM().pemString }

    func listenerYAML(_ tls: String) -> String {
        """
        static_resources:
          listeners:
          - name: tls
            address: {socket_address: {address: 127.0.0.1, port_value: 0}}
            filter_chains:
            - transport_socket:
                name: envoy.transport_sockets.tls
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
        \(tls)
              filters:
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                  stat_prefix: in
                  route_config: {virtual_hosts: [{name: a, domains: ["*"], routes: [{match: {prefix: /}, direct_response: {status: 200}}]}]}
                  http_filters: [{name: envoy.filters.http.router}]
        """
    }

    func decode(_ tls: String) throws -> TLSContextConfig {
        let b = try Bootstrap.load(text: listenerYAML(tls))
        return try #require(b.listeners[0].filterChains[0].tls)
    }

    func error(_ tls: String) -> String {
        do {
            _ = try Bootstrap.load(text: listenerYAML(tls))
            return ""
        } catch {
            return "\(error)"
        }
    }

    @Test func decodesTheMeshFields() throws {
        let c = try decode("""
                      require_client_certificate: true
                      common_tls_context:
                        alpn_protocols: [http/1.1]
                        tls_params: {tls_minimum_protocol_version: TLSv1_3, cipher_suites: [ECDHE-ECDSA-AES128-GCM-SHA256]}
                        tls_certificates: [{certificate_chain: {filename: /a.crt}, private_key: {filename: /a.key}}]
                        validation_context:
                          trusted_ca: {filename: /ca.crt}
                          match_typed_subject_alt_names: [{san_type: URI, matcher: {exact: "spiffe://td/ns/a/sa/b"}}]
            """)
        #expect(c.requireClientCertificate)
        #expect(c.alpnProtocols == ["http/1.1"])
        #expect(c.params.minimumVersion == .TLSv1_3)
        #expect(c.params.cipherSuites == ["ECDHE-ECDSA-AES128-GCM-SHA256"])
        guard case .inline(let certs) = c.certificates, case .inline(let v)? = c.validation else {
            Issue.record("certificates or validation not decoded")
            return
        }
        #expect(certs == [TLSCertificateConfig(certificateChain: .file("/a.crt"), privateKey: .file("/a.key"))])
        #expect(v.trustedCA == .file("/ca.crt"))
        #expect(v.matchSubjectAltNames.first?.type == .URI)
    }

    @Test func refusesWhatItDoesNotImplementByName() {
        #expect(error("""
                      session_timeout: 10s
                      common_tls_context: {tls_certificates: [{certificate_chain: {filename: /a}, private_key: {filename: /b}}]}
            """).contains("session_timeout"))
        #expect(error("""
                      common_tls_context:
                        tls_certificates: [{certificate_chain: {filename: /a}, private_key: {filename: /b}}]
                        validation_context: {trusted_ca: {filename: /c}, verify_certificate_hash: [abc]}
            """).contains("verify_certificate_hash"))
        #expect(error("""
                      require_client_certificate: true
                      common_tls_context: {tls_certificates: [{certificate_chain: {filename: /a}, private_key: {filename: /b}}]}
            """).contains("require_client_certificate needs a validation context"))
        #expect(error("""
                      common_tls_context:
                        alpn_protocols: [h2, http/1.1, spdy/3]
                        tls_certificates: [{certificate_chain: {filename: /a}, private_key: {filename: /b}}]
            """).contains("'spdy/3' cannot be negotiated"))
        #expect(error("""
                      common_tls_context: {alpn_protocols: [http/1.1]}
            """).contains("needs a certificate"))
    }

    @Test func missingFilesAndMismatchedKeysNameThePath() throws {
        let f = try Files()
        let root = try pki.ca("root")
        let a = try pki.leaf("spiffe://td/ns/a/sa/a", issuer: root), b = try pki.leaf("spiffe://td/ns/a/sa/b", issuer: root)
        try f.write("a.crt", try pem(a.cert))
        try f.write("b.key", b.key.pemRepresentation)
        let missing = TLSContextProvider(config: try decode("""
                      common_tls_context: {tls_certificates: [{certificate_chain: {filename: \(f.dir)/nope.crt}, private_key: {filename: \(f.dir)/b.key}}]}
            """), owner: "test")
        #expect(throws: (any Error).self) { try missing.load() }
        #expect((try? missing.load()) == nil)
        do { try missing.load() } catch { #expect("\(error)".contains("\(f.dir)/nope.crt does not exist")) }
        let mismatched = TLSContextProvider(config: try decode("""
                      common_tls_context: {tls_certificates: [{certificate_chain: {filename: \(f.dir)/a.crt}, private_key: {filename: \(f.dir)/b.key}}]}
            """), owner: "test")
        do {
            try mismatched.load()
            Issue.record("a key of another certificate was accepted")
        } catch {
            #expect("\(error)".contains("\(f.dir)/b.key does not match the certificate in \(f.dir)/a.crt"))
        }
    }

    /// Envoy needs `node` for SDS; we take `id` and `cluster` and show them in /server_info as Envoy does.
    @Test func nodeIsShownInServerInfo() throws {
        let yaml = "node: {id: \"sidecar~198.18.0.2~cart.shop\", cluster: cart}\n" + ProxyConfig.single(port: 9)
        let proxy = try ProxyHarness(yaml: yaml)
        defer { proxy.shutdown() }
        let info = try proxy.admin("GET", "/server_info")
        let json = try JSONSerialization.jsonObject(with: Data(info.body)) as? [String: Any]
        let options = json?["command_line_options"] as? [String: Any]
        #expect(options?["service_node"] as? String == "sidecar~198.18.0.2~cart.shop")
        #expect(options?["service_cluster"] as? String == "cart")
        // Fields of node we do not use are refused by name.
        #expect(throws: ConfigError.self) { try Bootstrap.load(text: "node: {id: a, locality: {zone: z}}\n" + ProxyConfig.single(port: 9)) }
    }

    @Test func sdsFileRotationSwapsOnlyConsistentPairs() throws {
        let f = try Files()
        let root = try pki.ca("root")
        let first = try pki.leaf("spiffe://td/ns/a/sa/a", issuer: root), second = try pki.leaf("spiffe://td/ns/a/sa/a", issuer: root)
        try f.write("tls.crt", try pem(first.cert))
        try f.write("tls.key", first.key.pemRepresentation)
        try f.write("sds.yaml", """
            resources:
            - "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
              name: default
              tls_certificate: {certificate_chain: {filename: \(f.dir)/tls.crt}, private_key: {filename: \(f.dir)/tls.key}}
            """)
        let provider = TLSContextProvider(config: try decode("""
                      common_tls_context:
                        tls_certificate_sds_secret_configs: [{name: default, sds_config: {path_config_source: {path: \(f.dir)/sds.yaml}}}]
            """), owner: "test")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let registry = StatsRegistry()
        let watcher = SecretWatcher(providers: [provider], registry: registry, eventLoop: group.next())
        watcher.prime()
        try provider.load()
        watcher.initialLoadSucceeded()
        let firstSerial = provider.snapshot.certificateSerial
        #expect(firstSerial == "\(first.cert.serialNumber)")
        // Half a rotation: the new certificate with the old key is refused and the old context stays.
        try f.write("tls.crt", try pem(second.cert))
        watcher.check()
        #expect(provider.snapshot.certificateSerial == firstSerial)
        let rejected = registry.snapshot.computed[registry.names.firstIndex(of: "sds.default.key_rotation_failed")!]!
        #expect(rejected() == 1)
        // The key arrives: the pair is consistent and new handshakes get the new certificate.
        try f.write("tls.key", second.key.pemRepresentation)
        watcher.check()
        #expect(provider.snapshot.certificateSerial == "\(second.cert.serialNumber)")
        let success = registry.snapshot.computed[registry.names.firstIndex(of: "sds.default.update_success")!]!
        #expect(success() == 2)  // the first load and this rotation, as Envoy counts them
        // Nothing changed: no reload.
        watcher.check()
        #expect(success() == 2)
    }
}
