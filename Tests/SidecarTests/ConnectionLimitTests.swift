import Foundation
import NIOCore
import Testing
@testable import Sidecar
@testable import SidecarCore

/// `envoy.filters.network.connection_limit` on real sockets, as Envoy 1.40 behaves with the same config: over the
/// limit a new connection is closed before the connection manager sees it (no answer), counted in
/// `connection_limit.<prefix>.limited_connections`; a closed connection gives its place back.
struct ConnectionLimitTests {
    static func yaml(delay: String? = nil) -> String {
        let limit = "      - name: envoy.filters.network.connection_limit\n"
            + "        typed_config:\n"
            + "          \"@type\": type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit\n"
            + "          stat_prefix: cl\n"
            + "          max_connections: 2\n"
            + (delay.map { "          delay: \($0)\n" } ?? "")
        let yaml = ProxyConfig.yaml(
            routes: [#"{match: {prefix: "/"}, direct_response: {status: 200, body: {inline_string: ok}}}"#], clusters: [])
        precondition(yaml.contains("    - filters:\n"), "ProxyConfig.yaml changed its layout")
        return yaml.replacingOccurrences(of: "    - filters:\n", with: "    - filters:\n" + limit)
    }

    static func get(_ c: RawClient) throws -> Int {
        try c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return try c.readResponse().status
    }

    @Test func overTheLimitConnectionsAreClosedUnansweredAndPlacesComeBack() throws {
        let proxy = try ProxyHarness(yaml: Self.yaml())
        defer { proxy.shutdown() }
        let a = try proxy.client(), b = try proxy.client()
        #expect(try Self.get(a) == 200)
        #expect(try Self.get(b) == 200)
        let c = try proxy.client()
        try? c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        // Closed by the proxy without a byte (a timeout would throw: that is a failure too).
        #expect(try c.readUntilEOF().isEmpty, "the third connection got an answer")
        #expect(try proxy.stat("connection_limit.cl.limited_connections") == 1)
        #expect(try proxy.stat("connection_limit.cl.active_connections") == 2)
        a.close()
        Thread.sleep(forTimeInterval: 0.2)
        let d = try proxy.client()
        #expect(try Self.get(d) == 200)
        #expect(try proxy.stat("connection_limit.cl.active_connections") == 2)
    }

    @Test func delayHoldsTheRefusedConnectionBeforeClosingIt() throws {
        let proxy = try ProxyHarness(yaml: Self.yaml(delay: "0.4s"))
        defer { proxy.shutdown() }
        let a = try proxy.client(), b = try proxy.client()
        #expect(try Self.get(a) == 200 && Self.get(b) == 200)
        let c = try proxy.client()
        let start = Date()
        #expect(try c.readUntilEOF().isEmpty)
        #expect(Date().timeIntervalSince(start) >= 0.3)
    }

    @Test func badConfigIsNamed() {
        for (bad, needle) in [("max_connections: 0", "max_connections"), ("runtime_enabled: {default_value: true, runtime_key: k}",
                                                                            "runtime_enabled")] {
            let yaml = Self.yaml().replacingOccurrences(of: "max_connections: 2", with: bad)
            let error = #expect(throws: ConfigError.self) { try Bootstrap.load(text: yaml) }
            #expect(error?.path.contains(needle) == true, Comment(rawValue: "\(error?.description ?? "")"))
        }
    }
}
