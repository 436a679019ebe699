import Foundation
import NIOHTTP1
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// `envoy.filters.http.cors`: the policy merge and preflight answers as plain values (a table written from what
/// Envoy 1.40 answered to the same requests), then the filter through a real proxy on loopback.
@Suite(.serialized) struct CORSFilterTests {
    static let type = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
    static let policyType = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
    static let filter = #"{name: envoy.filters.http.cors, typed_config: {"@type": \#(type)}}"#

    // MARK: The preflight table

    static func exact(_ s: String, ignoreCase: Bool = false) -> StringMatcher {
        StringMatcher(kind: .exact(s), ignoreCase: ignoreCase)
    }

    static let none = RuntimeFractionalPercent.zero
    static let all = RuntimeFractionalPercent.hundred

    /// The virtual host policy of the Envoy run the table comes from.
    static let vh = CORSPolicy(
        allowOrigins: [exact("https://a.example"), StringMatcher(kind: .prefix("https://pre."), ignoreCase: false)],
        allowMethods: "GET, POST", allowHeaders: "x-a, x-b", exposeHeaders: "x-exp", maxAge: "600",
        allowCredentials: true)

    struct Row: CustomTestStringConvertible, Sendable {
        var name: String
        /// Most specific first.
        var policies: [CORSPolicy]
        var method = "OPTIONS"
        var origin: String?
        var requestMethod: String?
        var requestHeaders: String?
        var privateNetwork: String?
        /// Answered by the filter (a 200 that never reaches the upstream).
        var local: Bool
        var check: CORSEvaluation.OriginCheck
        /// Every `access-control-*` header of the response the client gets (the upstream adds none).
        var headers: [String: String]

        var testDescription: String { name }
    }

    static let allowedPreflight: [String: String] = [
        "access-control-allow-origin": "https://a.example", "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, POST", "access-control-allow-headers": "x-a, x-b",
        "access-control-max-age": "600", "access-control-expose-headers": "x-exp",
    ]
    static let actual: [String: String] = [
        "access-control-allow-origin": "https://a.example", "access-control-allow-credentials": "true",
        "access-control-expose-headers": "x-exp",
    ]

    static let rows: [Row] = [
        Row(name: "preflight from an allowed origin", policies: [vh], origin: "https://a.example",
            requestMethod: "GET", local: true, check: .valid, headers: allowedPreflight),
        Row(name: "the requested method and headers do not change the configured answer", policies: [vh],
            origin: "https://a.example", requestMethod: "DELETE", requestHeaders: "x-z", privateNetwork: "true",
            local: true, check: .valid, headers: allowedPreflight),
        Row(name: "prefix matcher", policies: [vh], origin: "https://pre.zzz", requestMethod: "GET", local: true,
            check: .valid, headers: allowedPreflight.merging(["access-control-allow-origin": "https://pre.zzz"]) { $1 }),
        Row(name: "preflight from another origin goes upstream untouched", policies: [vh],
            origin: "https://evil.example", requestMethod: "GET", local: false, check: .invalid, headers: [:]),
        Row(name: "OPTIONS without access-control-request-method is an actual request", policies: [vh],
            origin: "https://a.example", local: false, check: .valid, headers: actual),
        Row(name: "OPTIONS with an empty access-control-request-method", policies: [vh], origin: "https://a.example",
            requestMethod: "", local: false, check: .valid, headers: actual),
        Row(name: "GET from an allowed origin", policies: [vh], method: "GET", origin: "https://a.example",
            local: false, check: .valid, headers: actual),
        Row(name: "POST with access-control-request-method is no preflight", policies: [vh], method: "POST",
            origin: "https://a.example", requestMethod: "GET", local: false, check: .valid, headers: actual),
        Row(name: "GET from another origin", policies: [vh], method: "GET", origin: "https://evil.example",
            local: false, check: .invalid, headers: [:]),
        Row(name: "no origin: not counted", policies: [vh], method: "GET", local: false, check: .notChecked,
            headers: [:]),
        Row(name: "empty origin: not counted", policies: [vh], method: "GET", origin: "", local: false,
            check: .notChecked, headers: [:]),
        Row(name: "a route's allow_methods, the rest from the virtual host",
            policies: [CORSPolicy(allowMethods: "PUT"), vh], origin: "https://a.example", requestMethod: "GET",
            local: true, check: .valid,
            headers: allowedPreflight.merging(["access-control-allow-methods": "PUT"]) { $1 }),
        Row(name: "* echoes the requested method and headers",
            policies: [CORSPolicy(allowMethods: "*", allowHeaders: "*"), vh], origin: "https://a.example",
            requestMethod: "DELETE", requestHeaders: "x-z, x-y", local: true, check: .valid,
            headers: allowedPreflight.merging(["access-control-allow-methods": "DELETE",
                                               "access-control-allow-headers": "x-z, x-y"]) { $1 }),
        Row(name: "allow_headers * without requested headers: an empty header",
            policies: [CORSPolicy(allowMethods: "*", allowHeaders: "*"), vh], origin: "https://a.example",
            requestMethod: "DELETE", local: true, check: .valid,
            headers: allowedPreflight.merging(["access-control-allow-methods": "DELETE",
                                               "access-control-allow-headers": ""]) { $1 }),
        Row(name: "forward_not_matching_preflights false: answered, without allow-origin or expose-headers",
            policies: [CORSPolicy(forwardNotMatchingPreflights: false), vh], origin: "https://evil.example",
            requestMethod: "GET", local: true, check: .invalid,
            headers: ["access-control-allow-credentials": "true", "access-control-allow-methods": "GET, POST",
                      "access-control-allow-headers": "x-a, x-b", "access-control-max-age": "600"]),
        Row(name: "private network access asked with exactly 'true'",
            policies: [CORSPolicy(allowPrivateNetworkAccess: true), vh], origin: "https://a.example",
            requestMethod: "GET", privateNetwork: "true", local: true, check: .valid,
            headers: allowedPreflight.merging(["access-control-allow-private-network": "true"]) { $1 }),
        Row(name: "private network access asked with 'TRUE'",
            policies: [CORSPolicy(allowPrivateNetworkAccess: true), vh], origin: "https://a.example",
            requestMethod: "GET", privateNetwork: "TRUE", local: true, check: .valid, headers: allowedPreflight),
        Row(name: "a route's allow_credentials false overrides the virtual host's true",
            policies: [CORSPolicy(allowCredentials: false), vh], method: "GET", origin: "https://a.example",
            local: false, check: .valid,
            headers: ["access-control-allow-origin": "https://a.example", "access-control-expose-headers": "x-exp"]),
        Row(name: "filter_enabled 0 on the route: nothing, not counted",
            policies: [CORSPolicy(filterEnabled: none), vh], origin: "https://a.example", requestMethod: "GET",
            local: false, check: .notChecked, headers: [:]),
        Row(name: "shadow: counted, not enforced",
            policies: [CORSPolicy(filterEnabled: none, shadowEnabled: all), vh], origin: "https://a.example",
            requestMethod: "GET", local: false, check: .valid, headers: [:]),
        Row(name: "only the most specific policy decides filter_enabled; '*' matches every origin",
            policies: [CORSPolicy(allowOrigins: [exact("*")]),
                       CORSPolicy(exposeHeaders: "x-rc-exp", allowCredentials: true, filterEnabled: none)],
            origin: "https://any.example", requestMethod: "GET", local: true, check: .valid,
            headers: ["access-control-allow-origin": "https://any.example", "access-control-allow-credentials": "true",
                      "access-control-expose-headers": "x-rc-exp"]),
        Row(name: "no policy: nothing", policies: [], origin: "https://a.example", requestMethod: "GET", local: false,
            check: .notChecked, headers: [:]),
        Row(name: "ignore_case", policies: [CORSPolicy(allowOrigins: [exact("https://A.example", ignoreCase: true)])],
            origin: "https://A.EXAMPLE", requestMethod: "GET", local: true, check: .valid,
            headers: ["access-control-allow-origin": "https://A.EXAMPLE"]),
        Row(name: "exact is case-sensitive", policies: [vh], origin: "https://A.example", requestMethod: "GET",
            local: false, check: .invalid, headers: [:]),
    ]

    /// The response headers as the client gets them: the filter's preflight answer, or the upstream's (none)
    /// after the filter's encodeHeaders.
    static func run(_ row: Row, random: UInt64 = 0) -> (CORSEvaluation, HTTPHeaders) {
        let chain = CORSPolicyChain(row.policies.first, row.policies.dropFirst().first,
                                    row.policies.dropFirst(2).first)
        let e = CORSEvaluation.evaluate(
            chain, method: row.method, origin: row.origin, requestMethod: row.requestMethod,
            requestHeaders: row.requestHeaders, requestPrivateNetwork: row.privateNetwork,
            enabled: { chain.enabled(nil) { random } }, shadowEnabled: { chain.shadowEnabled(nil) { random } })
        var headers = HTTPHeaders()
        for (n, v) in e.preflight ?? [] { headers.add(name: n, value: v) }
        e.applyResponseHeaders(chain, to: &headers)
        return (e, headers)
    }

    @Test(arguments: rows) func preflightTable(_ row: Row) {
        let (e, headers) = Self.run(row)
        #expect((e.preflight != nil) == row.local)
        #expect(e.origin == row.check)
        var got: [String: String] = [:]
        for (n, v) in headers where n.lowercased().hasPrefix("access-control-") {
            #expect(got[n.lowercased()] == nil, "\(n) twice")
            got[n.lowercased()] = v
        }
        #expect(got == row.headers)
    }

    @Test func matchersAsEnvoyAppliesThem() throws {
        let policy = CORSPolicy(allowOrigins: [
            StringMatcher(kind: .regex(try CompiledRegex(#"https://[a-z]+\.re\.example"#)), ignoreCase: false),
            StringMatcher(kind: .suffix(".suf"), ignoreCase: false),
            StringMatcher(kind: .contains("cont"), ignoreCase: false),
        ])
        let chain = CORSPolicyChain(policy)
        #expect(chain.isOriginAllowed("https://abc.re.example"))
        #expect(!chain.isOriginAllowed("https://ABC.re.example"))
        #expect(!chain.isOriginAllowed("https://x.re.example.evil"))
        #expect(chain.isOriginAllowed("https://foo.suf"))
        #expect(!chain.isOriginAllowed("https://foo.SUF"))
        #expect(chain.isOriginAllowed("https://xcontx"))
        #expect(!chain.isOriginAllowed("https://nope"))
    }

    @Test func thePolicyChainSkipsMissingLevels() {
        let route = CORSPolicy(allowMethods: "PUT")
        let rc = CORSPolicy(maxAge: "111")
        let chain = CORSPolicyChain(nil, route, rc)
        #expect(chain.allowMethods == "PUT")
        #expect(chain.maxAge == "111")
        #expect(chain.forwardNotMatchingPreflights)
        #expect(!chain.allowCredentials)
        #expect(CORSPolicyChain(nil, nil, nil).isEmpty)
        #expect(CORSPolicyChain(nil, nil, rc).maxAge == "111")
    }

    // MARK: Through the proxy

    static func policy(_ body: String) -> String { #"{"@type": \#(policyType), \#(body)}"# }

    static let vhPolicy = policy(#"allow_origin_string_match: [{exact: "https://a.example"}, {prefix: "https://pre."}], "#
        + #"allow_methods: "GET, POST", allow_headers: "x-a, x-b", expose_headers: x-exp, max_age: "600", "#
        + "allow_credentials: true")

    static func proxy(_ backend: TestBackend, routes: [String] = [ProxyConfig.catchAll],
                      virtualHost: String? = vhPolicy, virtualHostExtra: [String] = [],
                      routeConfiguration: String? = nil) throws -> ProxyHarness {
        var extra = virtualHostExtra
        if let virtualHost { extra.append("typed_per_filter_config: {envoy.filters.http.cors: \(virtualHost)}") }
        var yaml = ProxyConfig.yaml(routes: routes, clusters: [("backend", backend.port)],
                                    httpFilters: [filter], virtualHostExtra: extra)
        if let routeConfiguration {
            // The route configuration's own typed_per_filter_config, next to its name.
            var lines = yaml.components(separatedBy: "\n")
            let i = lines.firstIndex { $0.hasSuffix("name: local_route") }!
            let indent = String(lines[i].prefix { $0 == " " })
            lines.insert(indent + "typed_per_filter_config: {envoy.filters.http.cors: \(routeConfiguration)}", at: i + 1)
            yaml = lines.joined(separator: "\n")
        }
        return try ProxyHarness(yaml: yaml)
    }

    static func route(_ prefix: String, _ policy: String) -> String {
        #"{match: {prefix: "\#(prefix)"}, route: {cluster: backend}, typed_per_filter_config: {envoy.filters.http.cors: \#(policy)}}"#
    }

    static func corsHeaders(_ r: RawResponse) -> [String: String] {
        var out: [String: String] = [:]
        for (n, v) in r.headers where n.lowercased().hasPrefix("access-control-") { out[n.lowercased()] = v }
        return out
    }

    static let preflight = ["origin: https://a.example", "access-control-request-method: GET"]

    @Test func aPreflightIsAnsweredWithoutTheUpstream() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, virtualHostExtra: [#"response_headers_to_add: [{header: {key: x-vh, value: "1"}}]"#])
        defer { proxy.shutdown() }
        #expect(try proxy.stat("http.ingress_http.cors.origin_valid") == 0)
        #expect(try proxy.stat("http.ingress_http.cors.origin_invalid") == 0)

        let r = try proxy.fetch("OPTIONS", "/x", headers: Self.preflight)
        #expect(r.status == 200)
        #expect(Self.corsHeaders(r) == Self.allowedPreflight)
        #expect(r.header("content-length") == "0")
        #expect(r.header("content-type") == nil)
        #expect(r.header("server") == "envoy")
        #expect(r.header("date") != nil)
        // Not a local reply: the route's response_headers_to_add are not added (as in Envoy).
        #expect(r.header("x-vh") == nil)
        #expect(r.body.isEmpty)
        #expect(backend.requestCount == 0)

        let get = try proxy.fetch("GET", "/x", headers: ["origin: https://a.example"])
        #expect(get.status == 200)
        #expect(get.bodyString == TestBackend.helloBody)
        #expect(Self.corsHeaders(get) == Self.actual)
        #expect(get.header("x-vh") == "1")

        let evil = try proxy.fetch("GET", "/x", headers: ["origin: https://evil.example"])
        #expect(Self.corsHeaders(evil).isEmpty)
        let evilPreflight = try proxy.fetch("OPTIONS", "/x", headers: ["origin: https://evil.example",
                                                                        "access-control-request-method: GET"])
        #expect(Self.corsHeaders(evilPreflight).isEmpty)
        #expect(evilPreflight.bodyString == TestBackend.helloBody)
        _ = try proxy.fetch("GET", "/x")
        #expect(backend.requestCount == 4)
        #expect(try proxy.stat("http.ingress_http.cors.origin_valid") == 2)
        #expect(try proxy.stat("http.ingress_http.cors.origin_invalid") == 2)
    }

    @Test func theAllowedOriginReplacesAnAllowOriginAlreadyInTheResponse() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, virtualHostExtra: [
            #"response_headers_to_add: [{header: {key: access-control-allow-origin, value: "https://vh.example"}}]"#,
        ])
        defer { proxy.shutdown() }
        let ok = try proxy.fetch("GET", "/x", headers: ["origin: https://a.example"])
        #expect(ok.headerValues("access-control-allow-origin") == ["https://a.example"])
        let other = try proxy.fetch("GET", "/x", headers: ["origin: https://evil.example"])
        #expect(other.headerValues("access-control-allow-origin") == ["https://vh.example"])
    }

    @Test func policiesMergeFieldByFieldFromRouteToRouteConfiguration() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(
            backend,
            routes: [Self.route("/route", Self.policy(#"allow_methods: "PUT""#)),
                     Self.route("/star", Self.policy(#"allow_methods: "*", allow_headers: "*""#)),
                     Self.route("/strict", Self.policy("forward_not_matching_preflights: false")),
                     Self.route("/pna", Self.policy("allow_private_network_access: true")),
                     ProxyConfig.catchAll],
            virtualHost: Self.policy(#"allow_origin_string_match: [{exact: "*"}], allow_methods: "GET""#),
            routeConfiguration: Self.policy(#"expose_headers: x-rc, max_age: "111", allow_credentials: true, "#
                + "filter_enabled: {default_value: {numerator: 0}}"))
        defer { proxy.shutdown() }
        let base: [String: String] = [
            "access-control-allow-origin": "https://any.example", "access-control-allow-credentials": "true",
            "access-control-allow-methods": "GET", "access-control-max-age": "111",
            "access-control-expose-headers": "x-rc",
        ]
        let ask = ["origin: https://any.example", "access-control-request-method: DELETE"]
        // The virtual host's policy is the most specific: its (unset) filter_enabled enables the filter.
        #expect(Self.corsHeaders(try proxy.fetch("OPTIONS", "/x", headers: ask)) == base)
        #expect(Self.corsHeaders(try proxy.fetch("OPTIONS", "/route", headers: ask))
            == base.merging(["access-control-allow-methods": "PUT"]) { $1 })
        #expect(Self.corsHeaders(try proxy.fetch("OPTIONS", "/star", headers: ask + ["access-control-request-headers: x-q"]))
            == base.merging(["access-control-allow-methods": "DELETE", "access-control-allow-headers": "x-q"]) { $1 })
        #expect(Self.corsHeaders(try proxy.fetch("OPTIONS", "/pna", headers: ask + ["access-control-request-private-network: true"]))
            == base.merging(["access-control-allow-private-network": "true"]) { $1 })
        #expect(backend.requestCount == 0)
        #expect(try proxy.stat("http.ingress_http.cors.origin_valid") == 4)
    }

    @Test func notMatchingPreflightsAreAnsweredWhenTheyMayNotBeForwarded() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, routes: [Self.route("/", Self.policy("forward_not_matching_preflights: false"))])
        defer { proxy.shutdown() }
        let r = try proxy.fetch("OPTIONS", "/x", headers: ["origin: https://evil.example", "access-control-request-method: GET"])
        #expect(r.status == 200)
        #expect(Self.corsHeaders(r) == ["access-control-allow-credentials": "true", "access-control-allow-methods": "GET, POST",
                                        "access-control-allow-headers": "x-a, x-b", "access-control-max-age": "600"])
        #expect(backend.requestCount == 0)
        #expect(try proxy.stat("http.ingress_http.cors.origin_invalid") == 1)
    }

    @Test func disabledShadowedAndNonForwardingRoutesAreLeftAlone() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, routes: [
            Self.route("/off", Self.policy("filter_enabled: {default_value: {numerator: 0}}")),
            Self.route("/shadow", Self.policy("filter_enabled: {default_value: {numerator: 0}}, "
                + "shadow_enabled: {default_value: {numerator: 100}}")),
            #"{match: {prefix: "/skip"}, route: {cluster: backend}, typed_per_filter_config: {envoy.filters.http.cors: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}}}"#,
            #"{match: {prefix: "/direct"}, direct_response: {status: 200, body: {inline_string: direct}}}"#,
            #"{match: {prefix: "/redirect"}, redirect: {path_redirect: /elsewhere}}"#,
            ProxyConfig.catchAll,
        ])
        defer { proxy.shutdown() }
        for path in ["/off", "/shadow", "/skip"] {
            let r = try proxy.fetch("OPTIONS", path, headers: Self.preflight)
            #expect(r.bodyString == TestBackend.helloBody, "\(path)")
            #expect(Self.corsHeaders(r).isEmpty, "\(path)")
        }
        let direct = try proxy.fetch("OPTIONS", "/direct", headers: Self.preflight)
        #expect(direct.bodyString == "direct")
        #expect(Self.corsHeaders(direct).isEmpty)
        #expect(Self.corsHeaders(try proxy.fetch("GET", "/direct", headers: ["origin: https://a.example"])).isEmpty)
        let redirect = try proxy.fetch("GET", "/redirect", headers: ["origin: https://a.example"])
        #expect(redirect.status == 301)
        #expect(Self.corsHeaders(redirect).isEmpty)
        // Only the shadowed route counted.
        #expect(try proxy.stat("http.ingress_http.cors.origin_valid") == 1)
    }

    @Test func theDeprecatedCorsFieldsApplyOnlyWithoutATypedPolicy() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(
            backend,
            routes: [#"{match: {prefix: "/route"}, route: {cluster: backend, cors: {allow_methods: PUT}}}"#,
                     Self.route("/typed", Self.policy("allow_headers: x-typed")),
                     ProxyConfig.catchAll],
            virtualHost: nil,
            virtualHostExtra: [#"cors: {allow_origin_string_match: [{exact: "https://dep.example"}], allow_methods: GET, max_age: "5"}"#])
        defer { proxy.shutdown() }
        let ask = ["origin: https://dep.example", "access-control-request-method: GET"]
        #expect(Self.corsHeaders(try proxy.fetch("OPTIONS", "/x", headers: ask))
            == ["access-control-allow-origin": "https://dep.example", "access-control-allow-methods": "GET",
                "access-control-max-age": "5"])
        #expect(Self.corsHeaders(try proxy.fetch("OPTIONS", "/route", headers: ask))
            == ["access-control-allow-origin": "https://dep.example", "access-control-allow-methods": "PUT",
                "access-control-max-age": "5"])
        #expect(Self.corsHeaders(try proxy.fetch("GET", "/x", headers: ["origin: https://dep.example"]))
            == ["access-control-allow-origin": "https://dep.example"])
        // A typed policy anywhere hides the deprecated ones: this one allows no origin.
        let typed = try proxy.fetch("OPTIONS", "/typed", headers: ask)
        #expect(typed.bodyString == TestBackend.helloBody)
        #expect(Self.corsHeaders(typed).isEmpty)
        #expect(backend.requestCount == 2)
        #expect(try proxy.stat("http.ingress_http.cors.origin_valid") == 3)
        #expect(try proxy.stat("http.ingress_http.cors.origin_invalid") == 1)
    }

    @Test func aPreflightWithABodyClosesTheConnectionAndOneWithoutKeepsIt() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend)
        defer { proxy.shutdown() }
        let keep = try proxy.client()
        defer { keep.close() }
        try keep.send(RawClient.request("OPTIONS", "/x", headers: Self.preflight))
        let first = try keep.readResponse()
        #expect(first.status == 200)
        #expect(first.header("connection") == nil)
        try keep.send(RawClient.request("GET", "/x", headers: ["origin: https://a.example"]))
        let second = try keep.readResponse()
        #expect(second.bodyString == TestBackend.helloBody)
        #expect(second.header("access-control-allow-origin") == "https://a.example")

        let withBody = try proxy.client()
        defer { withBody.close() }
        try withBody.send(RawClient.request("OPTIONS", "/x", headers: Self.preflight + ["content-length: 3"]) + "abc")
        let r = try withBody.readResponse()
        #expect(r.status == 200)
        #expect(r.header("connection") == "close")
        #expect(withBody.waitForClose())
        #expect(backend.requestCount == 1)
    }

    @Test func badCorsConfigIsRefused() throws {
        func load(_ filter: String = CORSFilterTests.filter, routes: [String] = [ProxyConfig.catchAll],
                  vh: [String] = []) throws {
            _ = try Bootstrap.load(text: ProxyConfig.yaml(routes: routes, clusters: [("backend", 1)],
                                                          httpFilters: [filter], virtualHostExtra: vh))
        }
        #expect(throws: Never.self) { try load() }
        #expect(throws: ConfigError.self) {
            try load(#"{name: envoy.filters.http.cors, typed_config: {"@type": \#(Self.type), allow_methods: GET}}"#)
        }
        #expect(throws: ConfigError.self) {
            try load(vh: ["typed_per_filter_config: {envoy.filters.http.cors: \(Self.policy("allow_origin: x"))}"])
        }
        #expect(throws: ConfigError.self) {
            try load(vh: [#"typed_per_filter_config: {envoy.filters.http.cors: \#(Self.policy(#"allow_origin_string_match: [{prefix: ""}]"#))}"#])
        }
        #expect(throws: ConfigError.self) { try load(vh: ["cors: {allow_methods: GET, enabled: true}"]) }
    }
}
