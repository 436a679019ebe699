import Foundation
import Testing
@testable import Sidecar
@testable import SidecarCore

/// `/config_dump` shows no secret, as Envoy 1.40 (which prints `[redacted]` for every string inside a sensitive
/// field: `private_key` as `inline_string` or as `filename`, `password`, …).
struct ConfigDumpRedactionTests {
    static let keyText = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"

    static func tlsListener(_ name: String, port: Int, certificate: String) -> String {
        """
          - name: \(name)
            address: {socket_address: {address: 127.0.0.1, port_value: \(port)}}
            filter_chains:
            - transport_socket:
                name: envoy.transport_sockets.tls
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
                  common_tls_context:
                    tls_certificates:
                    - \(certificate)
              filters:
              - name: envoy.filters.network.tcp_proxy
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                  stat_prefix: \(name)
                  cluster: backend

        """
    }

    /// Listeners with the key inline and in a file, and a cluster whose client certificate's key is inline.
    static func yaml(certFile: String, keyFile: String, keyText: String, ports: (Int, Int) = (10_001, 10_002)) -> String {
        let inline = "{certificate_chain: {filename: \(certFile)}, private_key: {inline_string: \(jsonString(keyText))}}"
        let file = "{certificate_chain: {filename: \(certFile)}, private_key: {filename: \(keyFile)}}"
        return """
        admin:
          address: {socket_address: {address: 127.0.0.1, port_value: 0}}
        static_resources:
          listeners:

        """ + tlsListener("inline", port: ports.0, certificate: inline) + tlsListener("file", port: ports.1, certificate: file)
            + """
          clusters:
          - name: backend
            connect_timeout: 1s
            transport_socket:
              name: envoy.transport_sockets.tls
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
                common_tls_context:
                  tls_certificates:
                  - \(inline)
            load_assignment: {cluster_name: backend, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}

        """
    }

    static func jsonString(_ s: String) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: s, options: .fragmentsAllowed), as: UTF8.self)
    }

    static func bootstrap(_ dump: String) throws -> [String: Any] {
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any])
        let configs = try #require(doc["configs"] as? [[String: Any]])
        return try #require(configs.first?["bootstrap"] as? [String: Any])
    }

    static func certificates(_ dump: String) throws -> [[String: Any]] {
        let b = try bootstrap(dump)
        let sr = try #require(b["static_resources"] as? [String: Any])
        var out: [[String: Any]] = []
        for l in try #require(sr["listeners"] as? [[String: Any]]) {
            let chain = try #require((l["filter_chains"] as? [[String: Any]])?.first)
            out += try tlsCertificates(try #require(chain["transport_socket"] as? [String: Any]))
        }
        for c in try #require(sr["clusters"] as? [[String: Any]]) {
            out += try tlsCertificates(try #require(c["transport_socket"] as? [String: Any]))
        }
        return out
    }

    static func tlsCertificates(_ socket: [String: Any]) throws -> [[String: Any]] {
        let typed = try #require(socket["typed_config"] as? [String: Any])
        let common = try #require(typed["common_tls_context"] as? [String: Any])
        return try #require(common["tls_certificates"] as? [[String: Any]])
    }

    @Test func privateKeysAreRedactedInlineAndByFilenameCertificateChainsAreNot() throws {
        let dump = ConfigDump.json(Self.yaml(certFile: "/etc/certs/tls.crt", keyFile: "/etc/certs/tls.key", keyText: Self.keyText))
        #expect(!dump.contains("PRIVATE KEY") && !dump.contains("MIGHAgEA") && !dump.contains("tls.key"), "\(dump)")
        let certs = try Self.certificates(dump)
        #expect(certs.count == 3)
        #expect(certs.map { ($0["private_key"] as? [String: String]) ?? [:] } == [
            ["inline_string": "[redacted]"], ["filename": "[redacted]"], ["inline_string": "[redacted]"],
        ])
        #expect(certs.allSatisfy { ($0["certificate_chain"] as? [String: String]) == ["filename": "/etc/certs/tls.crt"] })
    }

    /// Every sensitive field of the messages that hold secrets, in any spelling, through merge keys, and as a
    /// plain scalar that reads as a number.
    @Test func everySensitiveFieldIsRedactedWherever() throws {
        let yaml = """
        static_resources:
          secrets:
          - name: s1
            tls_certificate: {certificate_chain: {filename: /c.pem}, private_key: {inline_string: k1}, password: {inline_string: pw1}, pkcs12: {inline_bytes: cDEy}}
          - name: s2
            session_ticket_keys: {keys: [{inline_bytes: dGsx}, {filename: /tk2}]}
          - name: s3
            generic_secret: {secret: {inline_string: gs1}}
          listeners:
          - name: l
            filter_chains:
            - transport_socket:
                typed_config:
                  session_ticket_keys: {keys: [{inline_string: tk3}]}
                  commonTlsContext:
                    tlsCertificates:
                    - {certificateChain: {filename: /c.pem}, privateKey: {inlineString: k2}, password: {inline_string: 12345}}
                    - {<<: {private_key: {filename: /k3}}, certificate_chain: {filename: /c.pem}}
        """
        let dump = ConfigDump.json(yaml)
        for secret in ["k1", "pw1", "cDEy", "dGsx", "/tk2", "gs1", "tk3", "k2", "12345", "/k3"] {
            #expect(!dump.contains("\"\(secret)\"") && !dump.contains(" \(secret)"), "\(secret) shows in \(dump)")
        }
        // The listener shows twice, as in Envoy: in the bootstrap and in ListenersConfigDump's static_listeners
        // (its 4 secrets and 2 certificate files again).
        // The two inline_bytes (bytes fields) show as the base64 of "[redacted]", as Envoy shows them.
        #expect(dump.components(separatedBy: "[redacted]").count - 1 == 8 + 4)
        #expect(dump.components(separatedBy: ConfigDump.redactedBytes).count - 1 == 2)
        #expect(dump.components(separatedBy: "/c.pem").count - 1 == 3 + 2)
    }

    @Test func adminConfigDumpShowsNoPrivateKey() throws {
        let dir = NSTemporaryDirectory() + "pf-dump-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let made = try runOpenSSL(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                   "-keyout", "\(dir)/tls.key", "-out", "\(dir)/tls.crt", "-days", "2", "-subj", "/CN=localhost"])
        #expect(made.status == 0, "\(made.output)")
        let key = try readFile("\(dir)/tls.key")
        let yaml = Self.yaml(certFile: "\(dir)/tls.crt", keyFile: "\(dir)/tls.key", keyText: key,
                             ports: (try closedLocalPort(), try closedLocalPort()))
        let proxy = try ProxyHarness(yaml: yaml)
        defer { proxy.shutdown() }
        let dump = try proxy.admin("GET", "/config_dump")
        #expect(dump.status == 200)
        let body = dump.bodyString
        let keyBody = key.split(separator: "\n").dropFirst().first.map(String.init) ?? "?"
        #expect(!body.contains("PRIVATE KEY") && !body.contains(keyBody) && !body.contains("tls.key"), "\(body)")
        #expect(try Self.certificates(body).compactMap { ($0["private_key"] as? [String: String])?.values.first }
            == ["[redacted]", "[redacted]", "[redacted]"])
    }
}
