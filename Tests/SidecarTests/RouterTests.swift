import NIOHTTP1
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// Route table behaviour, as ENVOY-SEMANTICS.md records it from Envoy 1.40.
@Suite struct RouterTests {
    // MARK: Helpers

    static func table(_ yaml: String) throws -> RouteConfiguration {
        try RouteConfiguration.load(text: yaml)
    }

    static func request(
        _ authority: String, _ path: String, method: String = "GET", scheme: String = "http",
        headers: [(String, String)] = [], random: UInt64 = 0
    ) -> RouteRequest {
        RouteRequest(
            method: method, path: path, authority: authority, scheme: scheme,
            headers: HTTPHeaders(headers), randomValue: random)
    }

    /// The cluster a request is forwarded to, or nil when it is not forwarded.
    static func cluster(
        _ config: RouteConfiguration, _ authority: String, _ path: String,
        headers: [(String, String)] = [], random: UInt64 = 0
    ) -> String? {
        forward(config, request(authority, path, headers: headers, random: random))?.cluster
    }

    static func forward(_ config: RouteConfiguration, _ request: RouteRequest) -> ForwardTarget? {
        if case .forward(let target) = config.route(request) { return target }
        return nil
    }

    /// The path a forwarded request leaves with.
    static func forwardedPath(_ config: RouteConfiguration, _ request: RouteRequest) -> String? {
        forward(config, request)?.path(for: request.path)
    }

    static func isNoRoute(_ decision: RouteDecision) -> Bool {
        if case .noRoute = decision { return true }
        return false
    }

    /// One virtual host for `*` whose routes are the given YAML list items.
    static func routes(_ items: String) throws -> RouteConfiguration {
        let indented = items.split(separator: "\n", omittingEmptySubsequences: false).map { "    " + $0 }
            .joined(separator: "\n")
        return try table(
            """
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
            \(indented)
            """)
    }

    // MARK: Virtual host selection

    static let domains = """
        virtual_hosts:
        - { name: exact, domains: ["api.example.com"], routes: [{ match: { prefix: "/" }, route: { cluster: exact } }] }
        - { name: short_suffix, domains: ["*.com"], routes: [{ match: { prefix: "/" }, route: { cluster: short_suffix } }] }
        - { name: long_suffix, domains: ["*.example.com"], routes: [{ match: { prefix: "/" }, route: { cluster: long_suffix } }] }
        - { name: short_prefix, domains: ["api.*"], routes: [{ match: { prefix: "/" }, route: { cluster: short_prefix } }] }
        - { name: long_prefix, domains: ["api.example.*"], routes: [{ match: { prefix: "/" }, route: { cluster: long_prefix } }] }
        - { name: fallback, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: fallback } }] }
        """

    @Test func exactDomainBeatsEveryWildcard() throws {
        let config = try Self.table(Self.domains)
        #expect(Self.cluster(config, "api.example.com", "/") == "exact")
        #expect(Self.cluster(config, "API.Example.COM", "/") == "exact")
    }

    @Test func longestSuffixWildcardBeatsShorterSuffixAndAnyPrefixWildcard() throws {
        let config = try Self.table(Self.domains)
        #expect(Self.cluster(config, "www.example.com", "/") == "long_suffix")
        #expect(Self.cluster(config, "api.other.com", "/") == "short_suffix")
    }

    @Test func longestPrefixWildcardWinsWhenNoSuffixMatches() throws {
        let config = try Self.table(Self.domains)
        #expect(Self.cluster(config, "api.example.org", "/") == "long_prefix")
        #expect(Self.cluster(config, "api.other.org", "/") == "short_prefix")
    }

    @Test func starCatchesEverythingElse() throws {
        let config = try Self.table(Self.domains)
        #expect(Self.cluster(config, "unknown.org", "/") == "fallback")
    }

    @Test func portIsPartOfTheHost() throws {
        let config = try Self.table(
            """
            virtual_hosts:
            - { name: api, domains: ["api.example.com"], routes: [{ match: { prefix: "/" }, route: { cluster: api } }] }
            """)
        #expect(Self.cluster(config, "api.example.com", "/") == "api")
        #expect(Self.isNoRoute(config.route(Self.request("api.example.com:80", "/"))))
    }

    @Test func suffixWildcardNeedsAtLeastOneCharacterBeforeIt() throws {
        let config = try Self.table(
            """
            virtual_hosts:
            - { name: wild, domains: ["*.example.com"], routes: [{ match: { prefix: "/" }, route: { cluster: wild } }] }
            """)
        #expect(Self.cluster(config, "www.example.com", "/") == "wild")
        #expect(Self.cluster(config, "a.b.example.com", "/") == "wild")
        #expect(Self.isNoRoute(config.route(Self.request("example.com", "/"))))
        #expect(Self.isNoRoute(config.route(Self.request(".example.com", "/"))))
    }

    @Test func noMatchingRouteIsNoRoute() throws {
        let config = try Self.routes(
            """
            - { match: { path: "/only" }, route: { cluster: c } }
            """)
        #expect(Self.isNoRoute(config.route(Self.request("x", "/other"))))
    }

    // MARK: Path matching

    @Test func exactPathIgnoresQueryButNotTrailingSlashOrCase() throws {
        let config = try Self.routes(
            """
            - { match: { path: "/exact" }, route: { cluster: exact } }
            - { match: { prefix: "/", case_sensitive: true }, route: { cluster: catch_all } }
            """)
        #expect(Self.cluster(config, "x", "/exact") == "exact")
        #expect(Self.cluster(config, "x", "/exact?a=1") == "exact")
        #expect(Self.cluster(config, "x", "/exact/") == "catch_all")
        #expect(Self.cluster(config, "x", "/EXACT") == "catch_all")
    }

    @Test func caseInsensitiveMatching() throws {
        let config = try Self.routes(
            """
            - { match: { path: "/Exact", case_sensitive: false }, route: { cluster: exact } }
            - { match: { prefix: "/Api/", case_sensitive: false }, route: { cluster: api } }
            - { match: { prefix: "/Api/" }, route: { cluster: sensitive } }
            """)
        #expect(Self.cluster(config, "x", "/eXACT") == "exact")
        #expect(Self.cluster(config, "x", "/API/users") == "api")
        #expect(Self.cluster(config, "x", "/api/users") == "api")
        #expect(Self.cluster(config, "x", "/Apix") == nil)
    }

    @Test func prefixIsMatchedAgainstThePathWithoutItsQuery() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/a?b" }, route: { cluster: never } }
            - { match: { prefix: "/a" }, route: { cluster: a } }
            """)
        #expect(Self.cluster(config, "x", "/a?b=1") == "a")
    }

    @Test func safeRegexMustMatchTheWholePath() throws {
        let config = try Self.routes(
            """
            - { match: { safe_regex: { regex: "/users/[0-9]+" } }, route: { cluster: users } }
            """)
        #expect(Self.cluster(config, "x", "/users/42") == "users")
        #expect(Self.cluster(config, "x", "/users/42?x=1") == "users")
        #expect(Self.cluster(config, "x", "/users/42/x") == nil)
        #expect(Self.cluster(config, "x", "/v1/users/42") == nil)
    }

    @Test func firstMatchingRouteWins() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/" }, route: { cluster: first } }
            - { match: { path: "/specific" }, route: { cluster: second } }
            """)
        #expect(Self.cluster(config, "x", "/specific") == "first")
    }

    // MARK: Rewrites

    @Test func prefixRewriteToSlashKeepsTheQuery() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/static/" }, route: { cluster: c, prefix_rewrite: "/" } }
            """)
        #expect(Self.forwardedPath(config, Self.request("x", "/static/img/a.png")) == "/img/a.png")
        #expect(Self.forwardedPath(config, Self.request("x", "/static/img/a.png?v=3&w=4")) == "/img/a.png?v=3&w=4")
    }

    @Test func emptyPrefixRewriteLeavesThePathAlone() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/static/" }, route: { cluster: c, prefix_rewrite: "" } }
            """)
        #expect(Self.forwardedPath(config, Self.request("x", "/static/a")) == "/static/a")
    }

    @Test func caseInsensitivePathRewriteReplacesTheMatchedLength() throws {
        let config = try Self.routes(
            """
            - { match: { path: "/api/locations", case_sensitive: false }, route: { cluster: c, prefix_rewrite: "/rewrote" } }
            """)
        #expect(Self.forwardedPath(config, Self.request("x", "/API/locations?works=true")) == "/rewrote?works=true")
    }

    @Test func regexRewriteOnPathSeparatedPrefix() throws {
        let config = try Self.routes(
            #"""
            - match: { path_separated_prefix: /api }
              route:
                cluster: api
                regex_rewrite: { pattern: { regex: "^/api/(.*)$" }, substitution: '/v1/\1' }
            """#)
        #expect(Self.forwardedPath(config, Self.request("x", "/api/users/7")) == "/v1/users/7")
        #expect(Self.forwardedPath(config, Self.request("x", "/api/users/7?q=1")) == "/v1/users/7?q=1")
        let bare = Self.forward(config, Self.request("x", "/api"))
        #expect(bare?.cluster == "api")
        #expect(bare?.path(for: "/api") == "/api")
        #expect(Self.forwardedPath(config, Self.request("x", "/api?q=1")) == "/api?q=1")
        #expect(Self.cluster(config, "x", "/apix") == nil)
        #expect(Self.cluster(config, "x", "/apix/users") == nil)
    }

    @Test func hostRewriteLiteralAndTimeoutReachTheTarget() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/" }, route: { cluster: c, host_rewrite_literal: upstream.internal, timeout: 0.3s } }
            """)
        let target = try #require(Self.forward(config, Self.request("x", "/")))
        #expect(target.hostRewrite == "upstream.internal")
        #expect(target.timeout == .milliseconds(300))
    }

    @Test func routeTimeoutDefaultsToFifteenSeconds() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/" }, route: { cluster: c } }
            """)
        #expect(Self.forward(config, Self.request("x", "/"))?.timeout == .seconds(15))
    }

    // MARK: Header and query matching

    static let headerRoutes = try! routes(
        #"""
        - { match: { prefix: "/", headers: [{ name: x-exact, string_match: { exact: "yes" } }] }, route: { cluster: exact } }
        - { match: { prefix: "/", headers: [{ name: x-prefix, string_match: { prefix: "abc" } }] }, route: { cluster: prefix } }
        - { match: { prefix: "/", headers: [{ name: x-suffix, string_match: { suffix: "xyz" } }] }, route: { cluster: suffix } }
        - { match: { prefix: "/", headers: [{ name: x-contains, string_match: { contains: "mid" } }] }, route: { cluster: contains } }
        - { match: { prefix: "/", headers: [{ name: x-regex, string_match: { safe_regex: { regex: "v[0-9]+" } } }] }, route: { cluster: regex } }
        - { match: { prefix: "/", headers: [{ name: x-present, present_match: true }] }, route: { cluster: present } }
        - { match: { prefix: "/", headers: [{ name: x-bare }] }, route: { cluster: bare } }
        - { match: { prefix: "/", headers: [{ name: x-legacy, exact_match: "old" }] }, route: { cluster: legacy } }
        - { match: { prefix: "/", headers: [{ name: x-inverted, string_match: { exact: "no" }, invert_match: true }] }, route: { cluster: inverted } }
        - { match: { prefix: "/" }, route: { cluster: default } }
        """#)

    @Test(arguments: [
        ("x-exact", "yes", "exact"), ("x-exact", "yes!", "default"), ("X-Exact", "yes", "exact"),
        ("x-prefix", "abcdef", "prefix"), ("x-prefix", "zabc", "default"),
        ("x-suffix", "wxyz", "suffix"), ("x-suffix", "xyzw", "default"),
        ("x-contains", "amidst", "contains"), ("x-contains", "mi d", "default"),
        ("x-regex", "v12", "regex"), ("x-regex", "v12b", "default"), ("x-regex", "xv12", "default"),
        ("x-present", "", "present"), ("x-bare", "anything", "bare"),
        ("x-legacy", "old", "legacy"), ("x-legacy", "older", "default"),
        ("x-inverted", "yes", "inverted"), ("x-inverted", "no", "default"),
    ])
    func headerMatchers(header: String, value: String, expected: String) {
        #expect(Self.cluster(Self.headerRoutes, "x", "/", headers: [(header, value)]) == expected)
    }

    @Test func invertedStringMatcherDoesNotMatchAnAbsentHeader() {
        #expect(Self.cluster(Self.headerRoutes, "x", "/") == "default")
    }

    @Test func headerNamesAreCaseInsensitiveAndRepeatedValuesAreJoined() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/", headers: [{ name: X-Multi, string_match: { exact: "a,b" } }] }, route: { cluster: joined } }
            """)
        #expect(Self.cluster(config, "x", "/", headers: [("x-multi", "a"), ("X-MULTI", "b")]) == "joined")
        #expect(Self.cluster(config, "x", "/", headers: [("x-multi", "a")]) == nil)
    }

    @Test func presentMatchFalseAndInvertedPresence() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/", headers: [{ name: x-debug, present_match: false }] }, route: { cluster: absent } }
            - { match: { prefix: "/", headers: [{ name: x-trace, present_match: true, invert_match: true }] }, route: { cluster: untraced } }
            - { match: { prefix: "/" }, route: { cluster: default } }
            """)
        #expect(Self.cluster(config, "x", "/", headers: [("x-trace", "1")]) == "absent")
        #expect(Self.cluster(config, "x", "/", headers: [("x-debug", "1")]) == "untraced")
        #expect(Self.cluster(config, "x", "/", headers: [("x-debug", "1"), ("x-trace", "1")]) == "default")
    }

    @Test func rangeMatchOnIntegerHeaders() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/", headers: [{ name: x-n, range_match: { start: 10, end: 20 } }] }, route: { cluster: range } }
            """)
        #expect(Self.cluster(config, "x", "/", headers: [("x-n", "10")]) == "range")
        #expect(Self.cluster(config, "x", "/", headers: [("x-n", "19")]) == "range")
        #expect(Self.cluster(config, "x", "/", headers: [("x-n", "20")]) == nil)
        #expect(Self.cluster(config, "x", "/", headers: [("x-n", "ten")]) == nil)
    }

    @Test func pseudoHeadersCanBeMatched() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/", headers: [{ name: ":method", string_match: { exact: POST } }] }, route: { cluster: post } }
            - { match: { prefix: "/", headers: [{ name: ":authority", string_match: { suffix: ".internal" } }] }, route: { cluster: internal } }
            """)
        #expect(Self.forward(config, Self.request("x", "/", method: "POST"))?.cluster == "post")
        #expect(Self.cluster(config, "db.internal", "/") == "internal")
    }

    @Test func hostHeaderIsOnlyKnownAsAuthority() throws {
        // Envoy keeps the HTTP/1 Host header as :authority only, so a matcher on "host" never sees it.
        let config = try Self.routes(
            """
            - { match: { prefix: "/", headers: [{ name: host }] }, route: { cluster: host } }
            - { match: { prefix: "/", headers: [{ name: ":authority", string_match: { exact: a.example } }] }, route: { cluster: authority } }
            """)
        #expect(Self.cluster(config, "a.example", "/", headers: [("host", "a.example")]) == "authority")
    }

    @Test func queryParameterMatchers() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/", query_parameters: [{ name: debug, present_match: true }] }, route: { cluster: debug } }
            - { match: { prefix: "/", query_parameters: [{ name: v, string_match: { exact: "2" } }] }, route: { cluster: v2 } }
            - { match: { prefix: "/" }, route: { cluster: default } }
            """)
        #expect(Self.cluster(config, "x", "/p?debug") == "debug")
        #expect(Self.cluster(config, "x", "/p?a=1&debug=0") == "debug")
        #expect(Self.cluster(config, "x", "/p?v=2") == "v2")
        #expect(Self.cluster(config, "x", "/p?v=3") == "default")
        #expect(Self.cluster(config, "x", "/p?version=2") == "default")
        #expect(Self.cluster(config, "x", "/p") == "default")
    }

    @Test func grpcMatchesOnlyGRPCContentTypes() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/", grpc: {} }, route: { cluster: grpc } }
            - { match: { prefix: "/" }, route: { cluster: http } }
            """)
        #expect(Self.cluster(config, "x", "/", headers: [("content-type", "application/grpc")]) == "grpc")
        #expect(Self.cluster(config, "x", "/", headers: [("content-type", "application/grpc+proto")]) == "grpc")
        #expect(Self.cluster(config, "x", "/", headers: [("content-type", "application/grpc-web")]) == "http")
        #expect(Self.cluster(config, "x", "/") == "http")
    }

    // MARK: Cluster choice

    @Test func clusterHeaderUsesTheFirstValueAndAMissingHeaderNamesNoCluster() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/" }, route: { cluster_header: X-Cluster } }
            """)
        #expect(Self.cluster(config, "x", "/", headers: [("x-cluster", "blue"), ("x-cluster", "green")]) == "blue")
        // Envoy selects the route with an empty cluster name; the router then answers as for an unknown cluster.
        #expect(Self.cluster(config, "x", "/") == "")
    }

    @Test func weightedClustersPickTheFirstClusterWhoseRunningTotalExceedsTheRandomValue() throws {
        let config = try Self.routes(
            """
            - match: { prefix: "/" }
              route:
                weighted_clusters:
                  clusters: [{ name: c1, weight: 30 }, { name: c2, weight: 30 }, { name: c3, weight: 40 }]
            """)
        let picks: [(UInt64, String)] = [
            (0, "c1"), (29, "c1"), (30, "c2"), (115, "c1"), (445, "c2"), (560, "c3"), (99, "c3"),
        ]
        for (random, expected) in picks {
            #expect(Self.cluster(config, "x", "/", random: random) == expected, "random \(random)")
        }
    }

    @Test func runtimeFractionUsesTheDefaultFractionWithoutARuntimeLayer() throws {
        let config = try Self.routes(
            """
            - match: { prefix: "/", runtime_fraction: { runtime_key: canary.key, default_value: { numerator: 30, denominator: HUNDRED } } }
              route: { cluster: canary }
            - match: { prefix: "/", runtime_fraction: { runtime_key: off.key, default_value: { numerator: 0 } } }
              route: { cluster: never }
            - { match: { prefix: "/" }, route: { cluster: stable } }
            """)
        #expect(Self.cluster(config, "x", "/", random: 0) == "canary")
        #expect(Self.cluster(config, "x", "/", random: 29) == "canary")
        #expect(Self.cluster(config, "x", "/", random: 129) == "canary")
        #expect(Self.cluster(config, "x", "/", random: 30) == "stable")
        #expect(Self.cluster(config, "x", "/", random: 99) == "stable")
    }

    // MARK: Redirects and direct responses

    @Test func pathRedirectIsAPermanentRedirectToTheSameHost() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/old" }, redirect: { path_redirect: /new } }
            """)
        guard case .redirect(let location, let status, _, _, _) = config.route(Self.request("shop.example.com", "/old"))
        else {
            Issue.record("expected a redirect")
            return
        }
        #expect(status == 301)
        #expect(location == "http://shop.example.com/new")
    }

    @Test func pathRedirectKeepsTheQueryUnlessStripped() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/keep" }, redirect: { path_redirect: /new } }
            - { match: { prefix: "/strip" }, redirect: { path_redirect: /new, strip_query: true } }
            - { match: { prefix: "/own" }, redirect: { path_redirect: "/new?x=1", strip_query: true } }
            """)
        #expect(Self.location(config, "h", "/keep?a=1") == "http://h/new?a=1")
        #expect(Self.location(config, "h", "/strip?a=1") == "http://h/new")
        #expect(Self.location(config, "h", "/own?a=1") == "http://h/new?x=1")
    }

    @Test func httpsRedirectKeepsHostAndPath() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/" }, redirect: { https_redirect: true } }
            """)
        #expect(Self.location(config, "shop.example.com", "/cart?id=3") == "https://shop.example.com/cart?id=3")
        // The default port of the old scheme goes; any other port stays.
        #expect(Self.location(config, "shop.example.com:80", "/") == "https://shop.example.com/")
        #expect(Self.location(config, "shop.example.com:8080", "/") == "https://shop.example.com:8080/")
    }

    @Test func redirectHostPortPrefixAndStatus() throws {
        let config = try Self.routes(
            """
            - { match: { prefix: "/moved" }, redirect: { host_redirect: new.example.com, port_redirect: 8443, response_code: FOUND } }
            - { match: { prefix: "/docs/" }, redirect: { prefix_rewrite: "/manual/", response_code: TEMPORARY_REDIRECT } }
            """)
        guard
            case .redirect(let location, let status, _, _, _) = config.route(
                Self.request("old.example.com:8080", "/moved/x"))
        else {
            Issue.record("expected a redirect")
            return
        }
        #expect(location == "http://new.example.com:8443/moved/x")
        #expect(status == 302)
        #expect(Self.location(config, "h", "/docs/a?b=1") == "http://h/manual/a?b=1")
    }

    @Test func requireTLSRedirectsPlainRequests() throws {
        let config = try Self.table(
            """
            virtual_hosts:
            - { name: all, domains: [all.example.com], require_tls: ALL, routes: [{ match: { prefix: "/" }, route: { cluster: c } }] }
            - { name: ext, domains: [ext.example.com], require_tls: EXTERNAL_ONLY, routes: [{ match: { prefix: "/" }, route: { cluster: c } }] }
            """)
        #expect(Self.location(config, "all.example.com", "/a?b") == "https://all.example.com/a?b")
        #expect(Self.forward(config, Self.request("all.example.com", "/", scheme: "https"))?.cluster == "c")
        var fromInside = Self.request("ext.example.com", "/")
        fromInside.isInternal = true
        #expect(Self.forward(config, fromInside)?.cluster == "c")
        #expect(Self.location(config, "ext.example.com", "/") == "https://ext.example.com/")
    }

    @Test func directResponseCarriesStatusAndBody() throws {
        let config = try Self.routes(
            """
            - match: { path: /ping }
              direct_response: { status: 200, body: { inline_string: "pong" } }
              response_headers_to_add: [{ header: { key: x-ping, value: "yes" } }]
            - { match: { path: /gone }, direct_response: { status: 410 } }
            """)
        guard case .directResponse(let response, let mutations, let vhost, _) = config.route(Self.request("x", "/ping"))
        else {
            Issue.record("expected a direct response")
            return
        }
        #expect(response.status == 200)
        #expect(response.body == Array("pong".utf8))
        #expect(vhost == "vh")
        var headers = HTTPHeaders()
        for m in mutations { m.applyResponse(to: &headers, context: Self.context) }
        #expect(headers["x-ping"] == ["yes"])
        guard case .directResponse(let gone, _, _, _) = config.route(Self.request("x", "/gone")) else {
            Issue.record("expected a direct response")
            return
        }
        #expect(gone.status == 410)
        #expect(gone.body == nil)
    }

    // MARK: Header mutations

    static let context: FormatContext = {
        var info = StreamInfo()
        info.downstreamRemoteAddress = StreamAddress(ip: "10.0.0.1", port: 5555)
        info.downstreamLocalAddress = StreamAddress(ip: "10.0.0.2", port: 80)
        info.protocolName = "HTTP/1.1"
        info.hostname = "node-1"
        return FormatContext(stream: info)
    }()

    @Test func headerMutationsApplyMostSpecificFirstSoTheRouteConfigurationWins() throws {
        let config = try Self.table(
            """
            request_headers_to_add: [{ header: { key: x-level, value: config }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }]
            virtual_hosts:
            - name: vh
              domains: ["*"]
              request_headers_to_add: [{ header: { key: x-level, value: vhost }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }]
              routes:
              - match: { prefix: "/" }
                route: { cluster: c }
                request_headers_to_add:
                - { header: { key: x-level, value: route }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }
                - { header: { key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" } }
            """)
        let target = try #require(Self.forward(config, Self.request("x", "/")))
        var headers = HTTPHeaders()
        for m in target.mutations { m.applyRequest(to: &headers, context: Self.context) }
        #expect(headers["x-level"] == ["config"])
        #expect(headers["x-client"] == ["10.0.0.1"])
    }

    @Test func appendActionsFollowEnvoyWithinOneLevel() throws {
        let config = try Self.routes(
            """
            - match: { prefix: "/" }
              route: { cluster: c }
              request_headers_to_remove: [x-drop]
              request_headers_to_add:
              - { header: { key: x-append, value: "2" } }
              - { header: { key: x-absent, value: "new" }, append_action: ADD_IF_ABSENT }
              - { header: { key: x-kept, value: "new" }, append_action: ADD_IF_ABSENT }
              - { header: { key: x-only-existing, value: "new" }, append_action: OVERWRITE_IF_EXISTS }
              - { header: { key: x-replace, value: "new" }, append: false }
              - { header: { key: x-empty, value: "" } }
              - { header: { key: x-kept-empty, value: "" }, keep_empty_value: true }
            """)
        let target = try #require(Self.forward(config, Self.request("x", "/")))
        var headers = HTTPHeaders([
            ("x-append", "1"), ("x-kept", "old"), ("x-replace", "a"), ("x-replace", "b"),
            ("x-drop", "gone"),
        ])
        for m in target.mutations { m.applyRequest(to: &headers, context: Self.context) }
        #expect(headers["x-append"] == ["1", "2"])
        #expect(headers["x-absent"] == ["new"])
        #expect(headers["x-kept"] == ["old"])
        #expect(headers["x-only-existing"] == [])
        #expect(headers["x-replace"] == ["new"])
        #expect(headers["x-drop"] == [])
        #expect(headers["x-empty"] == [])
        #expect(headers["x-kept-empty"] == [""])
    }

    static func location(_ config: RouteConfiguration, _ authority: String, _ path: String) -> String? {
        if case .redirect(let location, _, _, _, _) = config.route(request(authority, path)) { return location }
        return nil
    }
}
