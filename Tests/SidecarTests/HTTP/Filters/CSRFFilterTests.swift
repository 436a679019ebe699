import Foundation
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// `envoy.filters.http.csrf`: the origin check as plain values (a table written from what Envoy 1.40 answered
/// to the same requests), then the filter through a real proxy on loopback.
@Suite(.serialized) struct CSRFFilterTests {
    static let type = "type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy"

    // MARK: The origin check

    struct Row: CustomTestStringConvertible, Sendable {
        var method = "POST"
        var host = "app.example"
        var origin: String?
        var referer: String?
        var expected: CSRFPolicy.Outcome

        var testDescription: String {
            "\(method) host=\(host) origin=\(origin ?? "-") referer=\(referer ?? "-")"
        }
    }

    /// The filter config of the Envoy run.
    static let policy = CSRFPolicy(
        filterEnabled: .hundred, shadowEnabled: nil,
        additionalOrigins: [StringMatcher(kind: .exact("extra.example"), ignoreCase: false),
                            StringMatcher(kind: .suffix(".trusted"), ignoreCase: false),
                            StringMatcher(kind: .exact("null"), ignoreCase: false)])

    static let rows: [Row] = [
        Row(method: "GET", origin: "http://evil.example", expected: .notChecked),
        Row(method: "OPTIONS", origin: "http://evil.example", expected: .notChecked),
        Row(method: "HEAD", origin: "http://evil.example", expected: .notChecked),
        Row(method: "PATCH", origin: "http://evil.example", expected: .invalid),
        Row(method: "PUT", origin: "http://evil.example", expected: .invalid),
        Row(method: "DELETE", origin: "http://evil.example", expected: .invalid),
        Row(origin: "http://app.example", expected: .valid),
        // The scheme is not compared; the port and letter case are, as written.
        Row(origin: "https://app.example", expected: .valid),
        Row(origin: "ftp://app.example", expected: .valid),
        Row(host: "app.example:8080", origin: "http://app.example", expected: .invalid),
        Row(host: "app.example:8080", origin: "http://app.example:8080", expected: .valid),
        Row(host: "app.example:80", origin: "http://app.example", expected: .invalid),
        Row(origin: "http://app.example:80", expected: .invalid),
        Row(host: "APP.example", origin: "http://app.example", expected: .invalid),
        Row(origin: "http://APP.example", expected: .invalid),
        Row(host: "app.example.", origin: "http://app.example.", expected: .valid),
        Row(host: "[::1]:8080", origin: "http://[::1]:8080", expected: .valid),
        // Path, query and userinfo are dropped; a fragment right after the host is not a URL http_parser reads.
        Row(origin: "http://app.example/path", expected: .valid),
        Row(origin: "http://app.example?x=1", expected: .valid),
        Row(origin: "http://user@app.example", expected: .valid),
        Row(origin: "http://app.example#f", expected: .invalid),
        Row(origin: "http://app.example:abc", expected: .invalid),
        // Not a URL: compared as it is.
        Row(origin: "app.example", expected: .valid),
        Row(origin: "http://", expected: .invalid),
        Row(origin: "http://", referer: "http://app.example/x", expected: .invalid),
        // Two origin headers, joined with ','.
        Row(origin: "http://app.example,http://evil.example", expected: .invalid),
        Row(origin: "http://evil.example,http://app.example", expected: .invalid),
        // Origin: null is an opaque origin: no source origin, and Referer is not consulted.
        Row(origin: "null", expected: .missingSourceOrigin),
        Row(origin: "null", referer: "http://app.example/x", expected: .missingSourceOrigin),
        Row(origin: "null", referer: "http://extra.example/x", expected: .missingSourceOrigin),
        Row(origin: "Null", expected: .invalid),
        Row(origin: "NULL", referer: "http://app.example/x", expected: .invalid),
        Row(expected: .missingSourceOrigin),
        Row(referer: "http://app.example/some/page?q=1", expected: .valid),
        Row(referer: "http://evil.example/some/page", expected: .invalid),
        Row(origin: "http://evil.example", referer: "http://app.example/x", expected: .invalid),
        Row(origin: "", referer: "http://app.example/x", expected: .valid),
        Row(referer: "/relative/path", expected: .invalid),
        // additional_origins see the source origin's host and port.
        Row(origin: "http://extra.example", expected: .valid),
        Row(origin: "https://extra.example:8443", expected: .invalid),
        Row(origin: "https://a.trusted", expected: .valid),
        Row(referer: "null", expected: .valid),
    ]

    @Test(arguments: rows) func originCheck(_ row: Row) {
        #expect(Self.policy.check(method: row.method, origin: row.origin, referer: row.referer, host: row.host,
                                  scheme: "http") == row.expected)
    }

    @Test func aMissingSourceOriginIsNeverMatchedAgainstAdditionalOrigins() throws {
        let any = CSRFPolicy(filterEnabled: .hundred, shadowEnabled: nil,
                             additionalOrigins: [StringMatcher(kind: .regex(try CompiledRegex(".*")), ignoreCase: false)])
        #expect(any.check(method: "POST", origin: nil, referer: nil, host: "app.example", scheme: "http")
            == .missingSourceOrigin)
        #expect(any.check(method: "POST", origin: "null", referer: nil, host: "app.example", scheme: "http")
            == .missingSourceOrigin)
        #expect(any.check(method: "POST", origin: "http://evil.example", referer: nil, host: "app.example",
                          scheme: "http") == .valid)
    }

    @Test func hostAndPortAsHttpParserReadsThem() {
        let cases: [(String, String?)] = [
            ("http://a.example", "a.example"), ("https://a.example:8443/x?y#z", "a.example:8443"),
            ("http://u:p@a.example:1/", "a.example:1"), ("http://[::1]:80/", "[::1]:80"), ("http://[::1]", "[::1]"),
            ("http://[zz]/", nil), ("http://a.example:65536", nil), ("http://a.example:65535", "a.example:65535"),
            ("http://a.example:", nil), ("http:///x", nil), ("null", nil), ("a.example", nil), ("/x", nil),
            ("http://a b", nil), ("http://a@b@c", nil), ("http://a_b.example", "a_b.example"), ("", nil),
            ("HTTP://A.Example", "A.Example"),
        ]
        for (url, expected) in cases {
            #expect(EnvoyURL.hostAndPort(url) == expected, "\(url)")
        }
    }

    // MARK: Through the proxy

    static let always = "{default_value: {numerator: 100}}"
    static let never = "{default_value: {numerator: 0}}"

    static func policy(_ body: String) -> String { #"{"@type": \#(type), \#(body)}"# }

    static func filter(_ body: String = "filter_enabled: \(always)") -> String {
        "{name: envoy.filters.http.csrf, typed_config: \(policy(body))}"
    }

    static func route(_ prefix: String, _ perFilter: String) -> String {
        #"{match: {prefix: "\#(prefix)"}, route: {cluster: backend}, typed_per_filter_config: {envoy.filters.http.csrf: \#(perFilter)}}"#
    }

    static func proxy(_ backend: TestBackend, _ filterBody: String = "filter_enabled: \(always)",
                      routes: [String] = [ProxyConfig.catchAll], virtualHostExtra: [String] = []) throws -> ProxyHarness {
        try ProxyHarness(yaml: ProxyConfig.yaml(routes: routes, clusters: [("backend", backend.port)],
                                                httpFilters: [filter(filterBody)], virtualHostExtra: virtualHostExtra))
    }

    static let prefix = "http.ingress_http.csrf."

    @Test func aCrossOriginPostIsRefusedWith403() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, virtualHostExtra: [#"response_headers_to_add: [{header: {key: x-vh, value: "1"}}]"#])
        defer { proxy.shutdown() }
        for s in ["missing_source_origin", "request_invalid", "request_valid"] {
            #expect(try proxy.stat(Self.prefix + s) == 0)
        }
        let same = try proxy.fetch("POST", "/x", headers: ["origin: http://example.com"])
        #expect(same.status == 200)
        #expect(same.bodyString == TestBackend.helloBody)
        let evil = try proxy.fetch("POST", "/x", headers: ["origin: http://evil.example"])
        #expect(evil.status == 403)
        #expect(evil.bodyString == "Invalid origin")
        #expect(evil.header("content-type") == "text/plain")
        #expect(evil.header("content-length") == "14")
        // A local reply: the route's response headers are on it (as in Envoy).
        #expect(evil.header("x-vh") == "1")
        #expect(backend.requestCount == 1)
        #expect(try proxy.stat(Self.prefix + "request_valid") == 1)
        #expect(try proxy.stat(Self.prefix + "request_invalid") == 1)
        #expect(try proxy.stat(Self.prefix + "missing_source_origin") == 0)
        #expect(try proxy.stat("http.ingress_http.downstream_rq_4xx") == 1)
    }

    @Test func onlyMutatingMethodsAreChecked() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend)
        defer { proxy.shutdown() }
        let evil = ["origin: http://evil.example"]
        for m in ["GET", "OPTIONS", "HEAD"] { #expect(try proxy.fetch(m, "/x", headers: evil).status == 200, "\(m)") }
        for m in ["POST", "PUT", "DELETE", "PATCH"] { #expect(try proxy.fetch(m, "/x", headers: evil).status == 403, "\(m)") }
        #expect(try proxy.stat(Self.prefix + "request_invalid") == 4)
        #expect(backend.requestCount == 3)
    }

    @Test func sourceOriginFromOriginElseRefererAndNullIsMissing() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend)
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("POST", "/x", headers: ["referer: http://example.com/form?x=1"]).status == 200)
        #expect(try proxy.fetch("POST", "/x", headers: ["referer: https://evil.example/"]).status == 403)
        #expect(try proxy.fetch("POST", "/x").status == 403)
        #expect(try proxy.fetch("POST", "/x", headers: ["origin: null", "referer: http://example.com/"]).status == 403)
        #expect(try proxy.stat(Self.prefix + "request_valid") == 1)
        #expect(try proxy.stat(Self.prefix + "request_invalid") == 1)
        #expect(try proxy.stat(Self.prefix + "missing_source_origin") == 2)
    }

    @Test func thePortIsPartOfTheOrigin() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend)
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("POST", "/x", host: "example.com:8080", headers: ["origin: http://example.com"]).status == 403)
        #expect(try proxy.fetch("POST", "/x", host: "example.com:8080", headers: ["origin: http://example.com:8080"]).status == 200)
        #expect(try proxy.fetch("POST", "/x", host: "example.com", headers: ["origin: https://example.com:443"]).status == 403)
    }

    @Test func additionalOriginsShadowAndPerRoutePolicies() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(
            backend, "filter_enabled: \(Self.always), additional_origins: [{suffix: .trusted.example}]",
            routes: [
                Self.route("/shadow", Self.policy("filter_enabled: \(Self.never), shadow_enabled: \(Self.always)")),
                Self.route("/off", Self.policy("filter_enabled: \(Self.never)")),
                Self.route("/partner", Self.policy(#"filter_enabled: \#(Self.always), additional_origins: [{exact: "partner.example"}]"#)),
                #"{match: {prefix: "/skip"}, route: {cluster: backend}, typed_per_filter_config: {envoy.filters.http.csrf: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}}}"#,
                #"{match: {prefix: "/direct"}, direct_response: {status: 200, body: {inline_string: direct}}}"#,
                ProxyConfig.catchAll,
            ])
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("POST", "/x", headers: ["origin: https://app.trusted.example"]).status == 200)
        #expect(try proxy.fetch("POST", "/x", headers: ["origin: https://partner.example"]).status == 403)
        // A route's policy replaces the filter's whole.
        #expect(try proxy.fetch("POST", "/partner", headers: ["origin: https://partner.example"]).status == 200)
        #expect(try proxy.fetch("POST", "/partner", headers: ["origin: https://app.trusted.example"]).status == 403)
        #expect(try proxy.stat(Self.prefix + "request_valid") == 2)
        #expect(try proxy.stat(Self.prefix + "request_invalid") == 2)
        // Shadow: counted, let through.
        #expect(try proxy.fetch("POST", "/shadow", headers: ["origin: https://evil.example"]).status == 200)
        #expect(try proxy.fetch("POST", "/shadow").status == 200)
        #expect(try proxy.stat(Self.prefix + "request_invalid") == 3)
        #expect(try proxy.stat(Self.prefix + "missing_source_origin") == 1)
        // Off or disabled: not even counted.
        #expect(try proxy.fetch("POST", "/off", headers: ["origin: https://evil.example"]).status == 200)
        #expect(try proxy.fetch("POST", "/skip", headers: ["origin: https://evil.example"]).status == 200)
        #expect(try proxy.stat(Self.prefix + "request_invalid") == 3)
        // Unlike CORS, a direct response is checked too.
        #expect(try proxy.fetch("POST", "/direct", headers: ["origin: https://evil.example"]).status == 403)
        #expect(try proxy.stat(Self.prefix + "request_invalid") == 4)
    }

    @Test func anUnroutedRequestIsCheckedWithTheFiltersOwnPolicy() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        // The virtual host only shadows, but a request no route takes has no per-route policy at all.
        let proxy = try Self.proxy(
            backend, routes: [#"{match: {prefix: "/only"}, route: {cluster: backend}}"#],
            virtualHostExtra: ["typed_per_filter_config: {envoy.filters.http.csrf: "
                + Self.policy("filter_enabled: \(Self.never), shadow_enabled: \(Self.always)") + "}"])
        defer { proxy.shutdown() }
        let unrouted = try proxy.fetch("POST", "/x", headers: ["origin: https://evil.example"])
        #expect(unrouted.status == 403)
        #expect(unrouted.bodyString == "Invalid origin")
        #expect(try proxy.fetch("POST", "/only", headers: ["origin: https://evil.example"]).status == 200)
        #expect(try proxy.fetch("POST", "/x", headers: ["origin: http://example.com"]).status == 404)
        #expect(try proxy.stat(Self.prefix + "request_invalid") == 2)
        #expect(try proxy.stat(Self.prefix + "request_valid") == 1)
    }

    @Test func aRefusedRequestWithABodyClosesTheConnection() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend)
        defer { proxy.shutdown() }
        let c = try proxy.client()
        defer { c.close() }
        try c.send(RawClient.request("POST", "/x", headers: ["origin: http://evil.example", "content-length: 3"]) + "abc")
        let r = try c.readResponse()
        #expect(r.status == 403)
        #expect(r.header("connection") == "close")
        #expect(c.waitForClose())

        let keep = try proxy.client()
        defer { keep.close() }
        try keep.send(RawClient.request("POST", "/x", headers: ["origin: http://evil.example"]))
        #expect(try keep.readResponse().status == 403)
        try keep.send(RawClient.request("POST", "/x", headers: ["origin: http://example.com"]))
        #expect(try keep.readResponse().status == 200)
    }

    @Test func filterEnabledIsRequired() throws {
        func load(_ filter: String, vh: [String] = []) throws {
            _ = try Bootstrap.load(text: ProxyConfig.yaml(clusters: [("backend", 1)], httpFilters: [filter],
                                                          virtualHostExtra: vh))
        }
        #expect(throws: Never.self) { try load(Self.filter()) }
        do {
            try load(Self.filter("additional_origins: [{exact: a}]"))
            Issue.record("a policy without filter_enabled was accepted")
        } catch let e as ConfigError {
            #expect(e.message.contains("filter_enabled"))
        }
        #expect(throws: ConfigError.self) {
            try load(Self.filter(), vh: ["typed_per_filter_config: {envoy.filters.http.csrf: \(Self.policy("shadow_enabled: \(Self.always)"))}"])
        }
        #expect(throws: ConfigError.self) { try load(Self.filter("filter_enabled: \(Self.always), bogus: 1")) }
    }
}
