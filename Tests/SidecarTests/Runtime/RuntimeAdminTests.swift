import Foundation
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// `layered_runtime` through a real proxy: admin `/runtime` and `/runtime_modify`, and the features runtime keys
/// drive (route `runtime_fraction`, local_ratelimit `filter_enabled` / `filter_enforced`).
@Suite(.serialized) struct RuntimeAdminTests {
    static let layers = """
        layered_runtime:
          layers:
          - name: base
            static_layer:
              routes.canary: 0
              nested: {key: 3}
          - name: overrides
            admin_layer: {}

        """

    static let canaryRoutes = [
        #"{match: {prefix: "/canary", runtime_fraction: {default_value: {numerator: 100}, runtime_key: routes.canary}}, "#
            + #"direct_response: {status: 200, body: {inline_string: "canary"}}}"#,
        #"{match: {prefix: "/canary"}, direct_response: {status: 200, body: {inline_string: "stable"}}}"#,
        ProxyConfig.catchAll,
    ]

    static func proxy(_ backend: TestBackend, runtime: String = layers, routes: [String] = canaryRoutes,
                      httpFilters: [String] = []) throws -> ProxyHarness {
        try ProxyHarness(yaml: runtime + ProxyConfig.yaml(routes: routes, clusters: [("backend", backend.port)],
                                                          httpFilters: httpFilters))
    }

    static func json(_ r: RawResponse) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])
    }

    @Test func runtimeShowsLayersAndEachKeysValues() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend)
        defer { proxy.shutdown() }
        let r = try proxy.admin("GET", "/runtime")
        #expect(r.status == 200)
        #expect(r.header("content-type") == "application/json")
        let body = try Self.json(r)
        #expect(body["layers"] as? [String] == ["base", "overrides"])
        let entries = try #require(body["entries"] as? [String: [String: Any]])
        #expect(Set(entries.keys) == ["routes.canary", "nested.key"])
        #expect(entries["routes.canary"]?["final_value"] as? String == "0")
        #expect(entries["routes.canary"]?["layer_values"] as? [String] == ["0", ""])

        #expect(try proxy.admin("POST", "/runtime_modify?routes.canary=100&added=x%2Fy").bodyString == "OK\n")
        let after = try #require(Self.json(try proxy.admin("GET", "/runtime"))["entries"] as? [String: [String: Any]])
        #expect(after["routes.canary"]?["final_value"] as? String == "100")
        #expect(after["routes.canary"]?["layer_values"] as? [String] == ["0", "100"])
        #expect(after["added"]?["layer_values"] as? [String] == ["", "x/y"])
        #expect(try proxy.stat("runtime.num_layers") == 2)
        #expect(try proxy.stat("runtime.num_keys") == 3)
        #expect(try proxy.stat("runtime.admin_overrides_active") == 1)
        #expect(try proxy.stat("runtime.load_success") == 3)

        // An empty value removes the override.
        _ = try proxy.admin("POST", "/runtime_modify?added=&routes.canary=")
        let removed = try #require(Self.json(try proxy.admin("GET", "/runtime"))["entries"] as? [String: [String: Any]])
        #expect(removed["added"] == nil)
        #expect(removed["routes.canary"]?["final_value"] as? String == "0")
        #expect(try proxy.stat("runtime.admin_overrides_active") == 0)
    }

    @Test func runtimeModifyIsAPostWithParameters() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend)
        defer { proxy.shutdown() }
        #expect(try proxy.admin("GET", "/runtime_modify?a=1").status == 405)
        let usage = try proxy.admin("POST", "/runtime_modify")
        #expect(usage.status == 400)
        #expect(usage.bodyString.hasPrefix("usage: /runtime_modify?key1=value1"))
        // Form values in the body, when the query string has none.
        let c = try RawClient(port: proxy.adminPort)
        defer { c.close() }
        let form = "formkey=5"
        try c.send("POST /runtime_modify HTTP/1.1\r\nhost: a\r\ncontent-type: application/x-www-form-urlencoded\r\n"
            + "content-length: \(form.utf8.count)\r\nconnection: close\r\n\r\n" + form)
        #expect(try c.readResponse().status == 200)
        let entries = try #require(Self.json(try proxy.admin("GET", "/runtime"))["entries"] as? [String: [String: Any]])
        #expect(entries["formkey"]?["final_value"] as? String == "5")
    }

    @Test func withoutLayeredRuntimeThereAreNoLayersAndNoAdminLayer() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, runtime: "")
        defer { proxy.shutdown() }
        let body = try Self.json(try proxy.admin("GET", "/runtime"))
        #expect((body["layers"] as? [String])?.isEmpty == true)
        #expect((body["entries"] as? [String: Any])?.isEmpty == true)
        let r = try proxy.admin("POST", "/runtime_modify?routes.canary=0")
        #expect(r.status == 503)
        #expect(r.bodyString == "No admin layer specified")
        // The default (100%) decides.
        #expect(try proxy.fetch("GET", "/canary").bodyString == "canary")
        #expect(try proxy.stat("runtime.num_layers") == 0)
    }

    @Test func runtimeModifyTurnsARuntimeFractionRouteOnAndOff() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend)
        defer { proxy.shutdown() }
        func bodies(_ n: Int = 20) throws -> Set<String> {
            Set(try (0..<n).map { _ in try proxy.fetch("GET", "/canary").bodyString })
        }
        // The static layer's 0 overrides the default 100%.
        #expect(try bodies() == ["stable"])
        _ = try proxy.admin("POST", "/runtime_modify?routes.canary=100")
        #expect(try bodies() == ["canary"])
        // A FractionalPercent value, and an integer over 100 (always on).
        _ = try proxy.admin("POST", "/runtime_modify?routes.canary=%7Bnumerator%3A%200%7D")
        #expect(try bodies() == ["stable"])
        _ = try proxy.admin("POST", "/runtime_modify?routes.canary=250")
        #expect(try bodies() == ["canary"])
        // A value that is neither: the default (100%).
        _ = try proxy.admin("POST", "/runtime_modify?routes.canary=abc")
        #expect(try bodies() == ["canary"])
        // Removing the override brings the static layer's 0 back.
        _ = try proxy.admin("POST", "/runtime_modify?routes.canary=")
        #expect(try bodies() == ["stable"])
    }

    @Test func localRateLimitFilterEnabledFollowsItsRuntimeKey() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let typed = #"{"@type": \#(LocalRateLimitFilterTests.type), stat_prefix: rl, "#
            + "token_bucket: {max_tokens: 1, tokens_per_fill: 1, fill_interval: 3600s}, "
            + "filter_enabled: {runtime_key: rl.enabled, default_value: {numerator: 0}}, "
            + "filter_enforced: {runtime_key: rl.enforced, default_value: {numerator: 100}}}"
        let proxy = try Self.proxy(backend, routes: [ProxyConfig.catchAll],
                                   httpFilters: ["{name: envoy.filters.http.local_ratelimit, typed_config: \(typed)}"])
        defer { proxy.shutdown() }
        func statuses() throws -> [Int] { try (0..<3).map { _ in try proxy.fetch("GET", "/x").status } }
        #expect(try statuses() == [200, 200, 200])
        #expect(try proxy.stat("rl.http_local_rate_limit.enabled") == 0)
        _ = try proxy.admin("POST", "/runtime_modify?rl.enabled=100")
        #expect(try statuses() == [200, 429, 429])
        _ = try proxy.admin("POST", "/runtime_modify?rl.enforced=0")
        #expect(try statuses() == [200, 200, 200])
        #expect(try proxy.stat("rl.http_local_rate_limit.enabled") == 6)
        #expect(try proxy.stat("rl.http_local_rate_limit.enforced") == 2)
        #expect(try proxy.stat("rl.http_local_rate_limit.rate_limited") == 5)
    }
}
