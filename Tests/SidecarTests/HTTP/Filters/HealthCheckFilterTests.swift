import Foundation
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// `envoy.filters.http.health_check` and admin `/healthcheck/fail` / `/healthcheck/ok` through a real proxy on
/// loopback. What each test expects was measured on Envoy 1.40.
@Suite(.serialized) struct HealthCheckFilterTests {
    static let type = "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck"
    static let healthz = #"headers: [{name: ":path", string_match: {exact: "/healthz"}}]"#
    static let prefix = "http.\(ProxyConfig.statPrefix).health_check."

    static func filter(passThrough: Bool, _ extra: String = "") -> String {
        var s = #""@type": \#(type), pass_through_mode: \#(passThrough), \#(healthz)"#
        if !extra.isEmpty { s += ", " + extra }
        return "{name: envoy.filters.http.health_check, typed_config: {\(s)}}"
    }

    /// The proxy in front of `backend`, with `node.cluster: front` and `extraClusters` (YAML list items).
    static func yaml(_ backend: TestBackend, _ filter: String, extraClusters: String = "") -> String {
        "node: {id: n1, cluster: front}\n"
            + ProxyConfig.yaml(clusters: [("backend", backend.port)], httpFilters: [filter]) + extraClusters
    }

    static func proxy(_ backend: TestBackend, passThrough: Bool, _ extra: String = "") throws -> ProxyHarness {
        try ProxyHarness(yaml: yaml(backend, filter(passThrough: passThrough, extra)))
    }

    @Test func answersItselfAndAdminFailAndOkFlipTheAnswer() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, passThrough: false)
        defer { proxy.shutdown() }

        let ok = try proxy.fetch("GET", "/healthz")
        #expect(ok.status == 200)
        #expect(ok.body.isEmpty)
        #expect(ok.header("content-length") == "0")
        #expect(ok.header(HealthCheckFilter.checkedClusterHeader) == "front")
        #expect(ok.header(HealthCheckFilter.immediateFailHeader) == nil)
        #expect(backend.requestCount == 0)

        #expect(try proxy.admin("GET", "/healthcheck/fail").status == 405)
        let fail = try proxy.admin("POST", "/healthcheck/fail")
        #expect(fail.status == 200)
        #expect(fail.bodyString == "OK\n")
        let failed = try proxy.fetch("GET", "/healthz")
        #expect(failed.status == 503)
        #expect(failed.body.isEmpty)
        #expect(failed.header(HealthCheckFilter.checkedClusterHeader) == "front")
        #expect(failed.header(HealthCheckFilter.immediateFailHeader) == "true")
        // Other requests still go upstream, told that this proxy is failing.
        let other = try proxy.fetch("GET", "/other")
        #expect(other.status == 200)
        #expect(other.header(HealthCheckFilter.immediateFailHeader) == "true")
        #expect(other.header(HealthCheckFilter.checkedClusterHeader) == nil)
        #expect(backend.requestCount == 1)

        let ready = try proxy.admin("GET", "/ready")
        #expect(ready.status == 503)
        #expect(ready.bodyString == "DRAINING\n")
        #expect(try proxy.admin("GET", "/server_info").bodyString.contains(#""state": "DRAINING""#))
        #expect(try proxy.stat("server.live") == 0)
        #expect(try proxy.stat("server.state") == 1)

        #expect(try proxy.admin("GET", "/healthcheck/ok").status == 405)
        #expect(try proxy.admin("POST", "/healthcheck/ok").bodyString == "OK\n")
        #expect(try proxy.fetch("GET", "/healthz").status == 200)
        #expect(try proxy.admin("GET", "/ready").bodyString == "LIVE\n")
        #expect(try proxy.stat("server.live") == 1)
        #expect(try proxy.stat("server.state") == 0)

        #expect(try proxy.stat(Self.prefix + "request_total") == 3)
        #expect(try proxy.stat(Self.prefix + "ok") == 2)
        #expect(try proxy.stat(Self.prefix + "failed") == 1)
        // Health checks are not counted by response class; the one other request is.
        #expect(try proxy.stat("http.\(ProxyConfig.statPrefix).downstream_rq_2xx") == 1)
        #expect(try proxy.stat("http.\(ProxyConfig.statPrefix).downstream_rq_5xx") == 0)
        #expect(try proxy.stat("http.\(ProxyConfig.statPrefix).downstream_rq_total") == 4)
    }

    @Test func whileFailedEveryResponseClosesItsConnection() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, passThrough: false)
        defer { proxy.shutdown() }
        let c = try proxy.client()
        defer { c.close() }
        try c.send(RawClient.request("GET", "/healthz"))
        #expect(try c.readResponse().header("connection") == nil)
        try c.send(RawClient.request("GET", "/x"))
        #expect(try c.readResponse().header("connection") == nil)

        _ = try proxy.admin("POST", "/healthcheck/fail")
        try c.send(RawClient.request("GET", "/x"))
        let r = try c.readResponse()
        #expect(r.status == 200)
        #expect(r.header("connection") == "close")
        #expect(c.waitForClose())

        let c2 = try proxy.client()
        defer { c2.close() }
        try c2.send(RawClient.request("GET", "/healthz"))
        let hc = try c2.readResponse()
        #expect(hc.status == 503)
        #expect(hc.header("connection") == "close")
        #expect(c2.waitForClose())

        _ = try proxy.admin("POST", "/healthcheck/ok")
        let c3 = try proxy.client()
        defer { c3.close() }
        for _ in 0..<2 {
            try c3.send(RawClient.request("GET", "/healthz"))
            let again = try c3.readResponse()
            #expect(again.status == 200)
            #expect(again.header("connection") == nil)
        }
    }

    @Test func passThroughForwardsTheCheckUnlessTheServerIsFailed() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, passThrough: true)
        defer { proxy.shutdown() }
        let forwarded = try proxy.fetch("GET", "/healthz")
        #expect(forwarded.status == 200)
        #expect(!forwarded.body.isEmpty)
        #expect(forwarded.header(HealthCheckFilter.checkedClusterHeader) == "front")
        #expect(backend.requestCount == 1)
        // Only answered checks are counted.
        #expect(try proxy.stat(Self.prefix + "request_total") == 0)

        _ = try proxy.admin("POST", "/healthcheck/fail")
        let failed = try proxy.fetch("GET", "/healthz")
        #expect(failed.status == 503)
        #expect(failed.header(HealthCheckFilter.immediateFailHeader) == "true")
        #expect(backend.requestCount == 1)
        #expect(try proxy.stat(Self.prefix + "request_total") == 1)
        #expect(try proxy.stat(Self.prefix + "failed") == 1)

        _ = try proxy.admin("POST", "/healthcheck/ok")
        #expect(try proxy.fetch("GET", "/healthz").status == 200)
        #expect(backend.requestCount == 2)
        // The forwarded checks are health checks too: no response class.
        #expect(try proxy.stat("http.\(ProxyConfig.statPrefix).downstream_rq_2xx") == 0)
    }

    @Test func passThroughWithCacheTimeAnswersFromTheLastResponse() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        // Every request is a health check here (no header matchers), so the status path drives the cached code.
        let filter = #"{name: envoy.filters.http.health_check, typed_config: {"@type": \#(Self.type), "#
            + "pass_through_mode: true, cache_time: 60s}}"
        let proxy = try ProxyHarness(yaml: Self.yaml(backend, filter))
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/status/503").status == 503)
        #expect(backend.requestCount == 1)
        let cached = try proxy.fetch("GET", "/anything")
        #expect(cached.status == 503)
        #expect(cached.body.isEmpty)
        #expect(backend.requestCount == 1)
        #expect(try proxy.stat(Self.prefix + "cached_response") == 1)
        #expect(try proxy.stat(Self.prefix + "failed") == 1)
        #expect(try proxy.stat(Self.prefix + "request_total") == 1)
    }

    @Test func theCacheIsForgottenAtEachCacheTimeTick() {
        let cache = HealthCheckCache(intervalNanoseconds: 1000, start: 10_000)
        #expect(cache.cached(now: 10_100) == nil)
        cache.store(status: 503, degraded: true, now: 10_100)
        #expect(cache.cached(now: 10_999)! == (503, true))
        #expect(cache.cached(now: 11_000) == nil)
        cache.store(status: 200, degraded: false, now: 11_500)
        #expect(cache.cached(now: 11_999)! == (200, false))
        #expect(cache.cached(now: 13_000) == nil)
    }

    /// `pair`: two hosts under active health checks, one answering and one closed; `empty`: no hosts.
    static func clusters(live: Int, dead: Int) -> String {
        let hc = "health_checks: [{timeout: 1s, interval: 0.1s, unhealthy_threshold: 1, healthy_threshold: 1, "
            + #"http_health_check: {path: "/"}}]"#
        return """
          - {name: pair, connect_timeout: 1s, type: STATIC, \(hc), load_assignment: {cluster_name: pair, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: \(live)}}}}, {endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: \(dead)}}}}]}]}}
          - {name: empty, connect_timeout: 1s, type: STATIC, load_assignment: {cluster_name: empty, endpoints: []}}

        """
    }

    @Test func clusterMinHealthyPercentagesDecideTheAnswer() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let dead = try closedLocalPort()
        func proxy(_ minimums: String) throws -> ProxyHarness {
            try ProxyHarness(yaml: Self.yaml(
                backend, Self.filter(passThrough: false, "cluster_min_healthy_percentages: {\(minimums)}"),
                extraClusters: Self.clusters(live: backend.port, dead: dead)))
        }
        /// The answer once the first health checks ran (hosts start failing until their first check passes).
        func settled(_ p: ProxyHarness, _ expected: Int) throws -> Int {
            var status = 0
            for _ in 0..<50 {
                status = try p.fetch("GET", "/healthz").status
                if status == expected { break }
                Thread.sleep(forTimeInterval: 0.05)
            }
            return status
        }
        let cases: [(String, Int, String)] = [
            ("pair: {value: 50}", 200, "ok"),
            // Envoy 1.40 truncates the percentage to a whole number: 50.9 is 50.
            ("pair: {value: 50.9}", 200, "ok"),
            ("pair: {value: 51}", 503, "failed_cluster_unhealthy"),
            ("empty: {value: 10}", 503, "failed_cluster_empty"),
            ("empty: {value: 0}, pair: {value: 40}", 200, "ok"),
            ("nowhere: {value: 0}", 503, "failed_cluster_not_found"),
        ]
        for (minimums, status, counter) in cases {
            let p = try proxy(minimums)
            defer { p.shutdown() }
            #expect(try settled(p, status) == status, "\(minimums)")
            // Stable: one host passes, the other fails, and nothing changes that.
            Thread.sleep(forTimeInterval: 0.3)
            #expect(try p.fetch("GET", "/healthz").status == status, "\(minimums)")
            #expect(try p.stat(Self.prefix + counter)! >= 1, "\(minimums)")
        }
    }

    @Test func passThroughIgnoresClusterMinimums() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, passThrough: true, "cluster_min_healthy_percentages: {nowhere: {value: 50}}")
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/healthz").status == 200)
        #expect(backend.requestCount == 1)
    }

    @Test func configErrorsAreEnvoys() throws {
        func load(_ filter: String) throws {
            _ = try Bootstrap.load(text: ProxyConfig.yaml(clusters: [("backend", 1)], httpFilters: [filter]))
        }
        let missing = #"{name: envoy.filters.http.health_check, typed_config: {"@type": \#(Self.type)}}"#
        #expect { try load(missing) } throws: { "\($0)".contains("pass_through_mode") }
        #expect { try load(Self.filter(passThrough: false, "cache_time: 1s")) } throws: {
            "\($0)".contains("cache_time must not be set")
        }
        #expect { try load(Self.filter(passThrough: false, "cluster_min_healthy_percentages: {a: {value: 101}}")) }
            throws: { "\($0)".contains("[0, 100]") }
        try load(Self.filter(passThrough: true, "cache_time: 1s"))
    }
}
