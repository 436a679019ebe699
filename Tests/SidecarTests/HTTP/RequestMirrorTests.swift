import Foundation
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// Route `request_mirror_policies` through the real proxy: a copy goes to the mirror cluster, its answer never
/// reaches the client.
@Suite(.serialized) struct RequestMirrorTests {
    @Test(arguments: [
        ("example.com", "example.com-shadow"),
        ("example.com:8080", "example.com-shadow:8080"),
        ("[::1]:80", "[::1]-shadow:80"),
        ("[::1]", "[::1]-shadow"),
    ])
    func theShadowHostGetsItsSuffixBeforeThePort(host: String, expected: String) {
        #expect(MirrorPolicy.shadowHost(host) == expected)
    }

    static func proxy(_ main: TestBackend, _ mirror: TestBackend, policy: String) throws -> ProxyHarness {
        let route = #"{match: {prefix: "/"}, route: {cluster: backend, request_mirror_policies: [\#(policy)]}}"#
        return try ProxyHarness(yaml: ProxyConfig.yaml(
            routes: [route], clusters: [("backend", main.port), ("mirror", mirror.port)]))
    }

    @Test func aCopyGoesToTheMirrorAndItsAnswerIsDropped() throws {
        let mirror = try TestBackend()
        defer { mirror.stop() }
        // The main cluster's port is closed: the client gets the main request's 503, never the copy's 200.
        let closed = try closedLocalPort()
        let route = #"{match: {prefix: "/"}, route: {cluster: backend, request_mirror_policies: [{cluster: mirror}]}}"#
        let proxy = try ProxyHarness(yaml: ProxyConfig.yaml(
            routes: [route], clusters: [("backend", closed), ("mirror", mirror.port)]))
        defer { proxy.shutdown() }
        let r = try proxy.fetch("GET", "/a?x=1", host: "api.example.com:8080")
        #expect(r.status == 503)
        #expect(eventually(timeout: 5) { mirror.requestCount == 1 })
        #expect(mirror.lastHead?.header("host") == "api.example.com-shadow:8080")
        #expect(mirror.lastHead?.uri == "/a?x=1")
        // As Envoy's async client sends it.
        #expect(mirror.lastHead?.header("x-envoy-internal") == "true")
        #expect(mirror.lastHead?.header("x-forwarded-for") == SidecarServer.localAddress)
        #expect(eventually(timeout: 5) { (try? proxy.stat("cluster.mirror.upstream_rq_200")) == 1 })
        #expect(try proxy.stat("cluster.mirror.upstream_rq_total") == 1)
    }

    @Test func theBodyIsMirroredToo() throws {
        let main = try TestBackend()
        defer { main.stop() }
        let mirror = try TestBackend()
        defer { mirror.stop() }
        let proxy = try Self.proxy(main, mirror, policy: "{cluster: mirror, disable_shadow_host_suffix_append: true}")
        defer { proxy.shutdown() }
        let c = try proxy.client()
        let body = String(repeating: "m", count: 5000)
        try c.send(RawClient.request("POST", "/echo", headers: ["content-length: \(body.utf8.count)"]) + body)
        let r = try c.readResponse()
        #expect(r.status == 200)
        #expect(r.bodyString == body)
        #expect(eventually(timeout: 5) { mirror.requestCount == 1 })
        #expect(mirror.lastHead?.header("host") == "example.com")
        #expect(eventually(timeout: 5) { (try? proxy.stat("cluster.mirror.upstream_rq_200")) == 1 })
    }

    @Test func aZeroFractionMirrorsNothing() throws {
        let main = try TestBackend()
        defer { main.stop() }
        let mirror = try TestBackend()
        defer { mirror.stop() }
        let proxy = try Self.proxy(
            main, mirror, policy: "{cluster: mirror, runtime_fraction: {default_value: {numerator: 0}}}")
        defer { proxy.shutdown() }
        for _ in 0..<5 { #expect(try proxy.fetch("GET", "/").status == 200) }
        Thread.sleep(forTimeInterval: 0.2)
        #expect(mirror.requestCount == 0)
    }

    @Test func anUnknownMirrorClusterIsAConfigError() {
        let yaml = ProxyConfig.yaml(
            routes: [#"{match: {prefix: "/"}, route: {cluster: backend, request_mirror_policies: [{cluster: nope}]}}"#],
            clusters: [("backend", 1)])
        #expect(throws: ConfigError.self) { try Bootstrap.load(text: yaml) }
    }
}
