import Foundation
import NIOCore
import NIOHTTP1
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// The connection manager's request and response header rules, as values and through the real proxy. The
/// expectations were observed on Envoy 1.40 (loopback client, no internal_address_config).
@Suite(.serialized) struct ConnectionManagerHeadersTests {
    static func headers(_ pairs: [(String, String)]) -> HTTPHeaders { HTTPHeaders(pairs) }

    @Test func clientsNeverSetTheInternalOnlyEnvoyHeaders() {
        var h = Self.headers([("x-envoy-internal", "true"), ("x-envoy-ip-tags", "t"), ("x-envoy-force-trace", "1"),
                              ("x-envoy-original-path", "/o"), ("x-envoy-foo", "bar")])
        var random = FastRandom()
        ConnectionManagerHeaders().mutateRequest(&h, peer: nil, random: &random)
        #expect(h["x-envoy-internal"].isEmpty && h["x-envoy-ip-tags"].isEmpty && h["x-envoy-force-trace"].isEmpty)
        // Kept without use_remote_address.
        #expect(h.first(name: "x-envoy-original-path") == "/o")
        #expect(h.first(name: "x-envoy-foo") == "bar")
        #expect(h.first(name: "x-request-id")?.count == 36)
    }

    @Test func useRemoteAddressAppendsThePeerAndCleansExternalHeaders() throws {
        var rules = ConnectionManagerHeaders()
        rules.useRemoteAddress = true
        rules.localAddress = "192.0.2.2"
        var random = FastRandom()
        var h = Self.headers([("x-forwarded-for", "1.1.1.1"), ("x-envoy-downstream-service-cluster", "zz"),
                              ("x-request-id", "abc"), ("x-envoy-external-address", "9.9.9.9")])
        rules.mutateRequest(&h, peer: try SocketAddress(ipAddress: "198.18.0.7", port: 4000), random: &random)
        #expect(h.first(name: "x-forwarded-for") == "1.1.1.1,198.18.0.7")
        #expect(h.first(name: "x-envoy-external-address") == "198.18.0.7")
        #expect(h["x-envoy-downstream-service-cluster"].isEmpty)
        // An external request's id is replaced unless preserve_external_request_id.
        #expect(h.first(name: "x-request-id") != "abc")
        // A loopback peer is appended as the host's own address, as Envoy does.
        var loop = HTTPHeaders()
        rules.mutateRequest(&loop, peer: try SocketAddress(ipAddress: "127.0.0.1", port: 1), random: &random)
        #expect(loop.first(name: "x-forwarded-for") == "192.0.2.2")
        #expect(loop.first(name: "x-envoy-external-address") == "127.0.0.1")
        rules.preserveExternalRequestID = true
        var kept = Self.headers([("x-request-id", "abc")])
        rules.mutateRequest(&kept, peer: nil, random: &random)
        #expect(kept.first(name: "x-request-id") == "abc")
    }

    @Test func skipXFFAppendKeepsTheHeaderButStillNamesThePeer() throws {
        var rules = ConnectionManagerHeaders()
        rules.useRemoteAddress = true
        rules.skipXFFAppend = true
        var random = FastRandom()
        var h = Self.headers([("x-forwarded-for", "1.1.1.1")])
        rules.mutateRequest(&h, peer: try SocketAddress(ipAddress: "198.18.0.7", port: 4000), random: &random)
        #expect(h.first(name: "x-forwarded-for") == "1.1.1.1")
        #expect(h.first(name: "x-envoy-external-address") == "198.18.0.7")
        // With one trusted hop and nothing appended, the client is the last entry a hop wrote.
        rules.xffNumTrustedHops = 1
        #expect(rules.remoteAddress(h, peer: IPAddress(parsing: "198.18.0.7")) == IPAddress(parsing: "1.1.1.1"))
    }

    @Test(arguments: [
        (false, 0, "1.1.1.1, 2.2.2.2", "2.2.2.2"),
        (false, 1, "1.1.1.1, 2.2.2.2", "1.1.1.1"),
        (false, 2, "1.1.1.1, 2.2.2.2", "198.18.0.9"),
        (true, 0, "1.1.1.1,198.18.0.9", "198.18.0.9"),
        (true, 1, "1.1.1.1,198.18.0.9", "1.1.1.1"),
    ] as [(Bool, Int, String, String)])
    func theClientAddressHonoursTrustedHops(useRemote: Bool, hops: Int, xff: String, expected: String) {
        var rules = ConnectionManagerHeaders()
        rules.useRemoteAddress = useRemote
        rules.xffNumTrustedHops = hops
        let peer = IPAddress(parsing: "198.18.0.9")
        #expect(rules.remoteAddress(Self.headers([("x-forwarded-for", xff)]), peer: peer) == IPAddress(parsing: expected))
    }

    @Test func viaAndTheRequestIDGoOnResponses() {
        var rules = ConnectionManagerHeaders()
        rules.via = "pilotfish"
        rules.alwaysSetRequestIDInResponse = true
        var h = Self.headers([("via", "1.1 upstream")])
        rules.mutateResponse(&h, requestID: "id-1")
        #expect(h.first(name: "via") == "1.1 upstream, pilotfish")
        #expect(h.first(name: "x-request-id") == "id-1")
    }

    // MARK: Through the proxy

    static func proxy(_ backend: TestBackend, _ hcm: [String], node: Bool = false) throws -> ProxyHarness {
        var yaml = ProxyConfig.yaml(clusters: [("backend", backend.port)], hcmExtra: hcm)
        if node { yaml = "node: {id: pod-1, cluster: web}\n" + yaml }
        return try ProxyHarness(yaml: yaml)
    }

    @Test func requestIDCanBeTurnedOffAndEchoed() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let off = try Self.proxy(backend, ["generate_request_id: false"])
        _ = try off.fetch("GET", "/")
        #expect(backend.lastHead?.header("x-request-id") == nil)
        off.shutdown()
        let echo = try Self.proxy(backend, ["always_set_request_id_in_response: true", "via: edge"])
        defer { echo.shutdown() }
        let r = try echo.fetch("GET", "/", headers: ["x-request-id: given"])
        #expect(r.header("x-request-id") == "given")
        #expect(backend.lastHead?.header("x-request-id") == "given")
        #expect(backend.lastHead?.header("via") == "edge")
        #expect(r.header("via") == "edge")
    }

    @Test func addUserAgentNamesTheNode() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, ["add_user_agent: true"], node: true)
        defer { proxy.shutdown() }
        _ = try proxy.fetch("GET", "/")
        #expect(backend.lastHead?.header("x-envoy-downstream-service-cluster") == "web")
        #expect(backend.lastHead?.header("x-envoy-downstream-service-node") == "pod-1")
        #expect(backend.lastHead?.header("user-agent") == "web")
    }

    @Test func useRemoteAddressThroughTheProxy() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, ["use_remote_address: true"])
        defer { proxy.shutdown() }
        _ = try proxy.fetch("GET", "/", headers: ["x-forwarded-for: 1.1.1.1", "x-envoy-original-path: /x"])
        #expect(backend.lastHead?.header("x-forwarded-for") == "1.1.1.1," + SidecarServer.localAddress)
        #expect(backend.lastHead?.header("x-envoy-external-address") == "127.0.0.1")
        #expect(backend.lastHead?.header("x-envoy-original-path") == nil)
    }

    @Test func maxRequestsPerConnectionClosesAfterTheLast() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, ["common_http_protocol_options: {max_requests_per_connection: 2}"])
        defer { proxy.shutdown() }
        let c = try proxy.client()
        try c.send(RawClient.request("GET", "/1"))
        #expect(try c.readResponse().header("connection") == nil)
        try c.send(RawClient.request("GET", "/2"))
        #expect(try c.readResponse().header("connection") == "close")
        #expect(c.waitForClose())
    }

    @Test func aConnectionOlderThanMaxConnectionDurationIsClosedOnceIdle() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, ["common_http_protocol_options: {max_connection_duration: 0.3s}"])
        defer { proxy.shutdown() }
        // A request still running when the connection comes of age is answered; then the connection closes.
        let c = try proxy.client()
        try c.send(RawClient.request("GET", "/slow?ms=500"))
        #expect(try c.readResponse().status == 200)
        #expect(c.waitForClose())
        // An idle connection past its age is closed without a request.
        let idle = try proxy.client()
        #expect(idle.waitForClose())
        #expect(try proxy.stat("http.ingress_http.downstream_cx_max_duration_reached") == 2)
    }

    @Test func trafficDirectionIsAccepted() throws {
        let yaml = ProxyConfig.yaml(clusters: [("backend", 1)])
            .replacingOccurrences(of: "  - name: listener_0\n", with: "  - name: listener_0\n    traffic_direction: INBOUND\n")
        #expect(yaml.contains("traffic_direction: INBOUND"))
        #expect(try Bootstrap.load(text: yaml).listeners[0].trafficDirection == .INBOUND)
        #expect(throws: ConfigError.self) {
            try Bootstrap.load(text: yaml.replacingOccurrences(of: "INBOUND", with: "SIDEWAYS"))
        }
    }

    @Test func idleConnectionsAreClosed() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, ["common_http_protocol_options: {idle_timeout: 0.2s}"])
        defer { proxy.shutdown() }
        let c = try proxy.client()
        try c.send(RawClient.request("GET", "/"))
        #expect(try c.readResponse().status == 200)
        #expect(c.waitForClose())
        #expect(try proxy.stat("http.ingress_http.downstream_cx_idle_timeout") == 1)
    }

    @Test func aRequestThatDoesNotArriveInTimeGets408() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, ["request_timeout: 0.2s"])
        defer { proxy.shutdown() }
        let c = try proxy.client()
        try c.send(RawClient.request("POST", "/", headers: ["content-length: 10"]) + "abc")
        let r = try c.readResponse()
        #expect(r.status == 408)
        #expect(r.bodyString == "request timeout")
        #expect(c.waitForClose())
    }

    /// Envoy's request ids are version-4 UUIDs: 8-4-4-4-12 lower-case hex digits, version 4, variant 10xx.
    @Test func generatedRequestIDsAreVersion4UUIDs() {
        var random = FastRandom()
        var seen = Set<String>()
        for _ in 0..<2000 {
            let id = Array(random.uuid().utf8)
            #expect(id.count == 36)
            for (i, b) in id.enumerated() {
                if [8, 13, 18, 23].contains(i) {
                    #expect(b == UInt8(ascii: "-"))
                } else {
                    #expect((48...57).contains(b) || (97...102).contains(b), "position \(i)")
                }
            }
            #expect(id[14] == UInt8(ascii: "4"))
            #expect([UInt8(ascii: "8"), UInt8(ascii: "9"), UInt8(ascii: "a"), UInt8(ascii: "b")].contains(id[19]))
            seen.insert(String(decoding: id, as: UTF8.self))
        }
        #expect(seen.count == 2000)
    }
}
