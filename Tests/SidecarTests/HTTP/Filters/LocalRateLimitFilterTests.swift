import Foundation
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// `envoy.filters.http.local_ratelimit` through a real proxy on loopback.
@Suite(.serialized) struct LocalRateLimitFilterTests {
    static let type = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
    static let always = "{default_value: {numerator: 100}, runtime_key: rl}"

    static func config(_ bucket: String = "{max_tokens: 2, tokens_per_fill: 1, fill_interval: 60s}",
                       enabled: String = always, enforced: String = always, extra: String = "") -> String {
        var s = #""@type": \#(type), stat_prefix: http_local_rate_limiter, token_bucket: \#(bucket)"#
        if !enabled.isEmpty { s += ", filter_enabled: \(enabled)" }
        if !enforced.isEmpty { s += ", filter_enforced: \(enforced)" }
        if !extra.isEmpty { s += ", " + extra }
        return "{" + s + "}"
    }

    static func proxy(_ backend: TestBackend, _ typedConfig: String, routes: [String] = [ProxyConfig.catchAll])
        throws -> ProxyHarness
    {
        try ProxyHarness(yaml: ProxyConfig.yaml(
            routes: routes, clusters: [("backend", backend.port)],
            httpFilters: ["{name: envoy.filters.http.local_ratelimit, typed_config: \(typedConfig)}"]))
    }

    static let prefix = "http_local_rate_limiter.http_local_rate_limit."

    @Test func anEmptyBucketAnswers429() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, Self.config(extra: "response_headers_to_add: [{header: {key: x-limited, value: 'yes'}}]"))
        defer { proxy.shutdown() }
        let statuses = try (0..<4).map { _ in try proxy.fetch("GET", "/x").status }
        #expect(statuses == [200, 200, 429, 429])
        let limited = try proxy.fetch("GET", "/x")
        #expect(limited.bodyString == "local_rate_limited")
        #expect(limited.header("x-limited") == "yes")
        #expect(backend.requestCount == 2)
        #expect(try proxy.stat(Self.prefix + "enabled") == 5)
        #expect(try proxy.stat(Self.prefix + "ok") == 2)
        #expect(try proxy.stat(Self.prefix + "rate_limited") == 3)
        #expect(try proxy.stat(Self.prefix + "enforced") == 3)
    }

    @Test func withoutFilterEnabledNothingIsCounted() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, Self.config(enabled: "", enforced: ""))
        defer { proxy.shutdown() }
        for _ in 0..<4 { #expect(try proxy.fetch("GET", "/x").status == 200) }
        #expect(try proxy.stat(Self.prefix + "enabled") == 0)
    }

    @Test func notEnforcedCountsButLetsThrough() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, Self.config(enforced: ""))
        defer { proxy.shutdown() }
        for _ in 0..<4 { #expect(try proxy.fetch("GET", "/x").status == 200) }
        #expect(try proxy.stat(Self.prefix + "rate_limited") == 2)
        #expect(try proxy.stat(Self.prefix + "enforced") == 0)
    }

    @Test func xRateLimitHeadersReportTheBucket() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, Self.config(extra: "enable_x_ratelimit_headers: DRAFT_VERSION_03"))
        defer { proxy.shutdown() }
        let first = try proxy.fetch("GET", "/x")
        #expect(first.header("x-ratelimit-limit") == "2")
        #expect(first.header("x-ratelimit-remaining") == "1")
        // Envoy 1.40: 0 while a whole token is left.
        #expect(first.header("x-ratelimit-reset") == "0")
        _ = try proxy.fetch("GET", "/x")
        let limited = try proxy.fetch("GET", "/x")
        #expect(limited.status == 429)
        #expect(limited.header("x-ratelimit-remaining") == "0")
    }

    @Test func aRouteHasItsOwnBucket() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let own = Self.config("{max_tokens: 1, tokens_per_fill: 1, fill_interval: 60s}")
        let routes = [
            #"{match: {prefix: "/tight"}, route: {cluster: backend}, typed_per_filter_config: {envoy.filters.http.local_ratelimit: \#(own)}}"#,
            ProxyConfig.catchAll,
        ]
        let proxy = try Self.proxy(backend, Self.config("{max_tokens: 100, tokens_per_fill: 1, fill_interval: 60s}"),
                                   routes: routes)
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/tight").status == 200)
        #expect(try proxy.fetch("GET", "/tight").status == 429)
        #expect(try proxy.fetch("GET", "/other").status == 200)
    }

    @Test func perConnectionBucketsAreSeparate() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, Self.config(
            "{max_tokens: 1, tokens_per_fill: 1, fill_interval: 60s}",
            extra: "local_rate_limit_per_downstream_connection: true"))
        defer { proxy.shutdown() }
        for _ in 0..<2 {
            let c = try proxy.client()
            try c.send(RawClient.request("GET", "/a"))
            let first = try c.readResponse()
            #expect(first.status == 200, "\(first.status) \(first.bodyString)")
            try c.send(RawClient.request("GET", "/b"))
            #expect(try c.readResponse().status == 429)
            c.close()
        }
    }

    @Test func fillIntervalUnder50msIsRefused() {
        let yaml = ProxyConfig.yaml(clusters: [("backend", 1)], httpFilters: [
            "{name: envoy.filters.http.local_ratelimit, typed_config: \(Self.config("{max_tokens: 1, fill_interval: 0.01s}"))}",
        ])
        #expect(throws: ConfigError.self) { try Bootstrap.load(text: yaml) }
    }
}
