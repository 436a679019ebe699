import NIOCore
import NIOHTTP1
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// The RBAC filters' matcher form (`matcher` / `shadow_matcher`, an `xds.type.matcher.v3.Matcher` ending in
/// `envoy.config.rbac.v3.Action`s): loading, evaluation, and the proxy, with the answers Envoy 1.40 gives for
/// the same configs and requests.
@Suite struct RBACMatcherTests {
    // MARK: Building blocks (YAML flow text)

    static func action(_ action: String, name: String = "p") -> String {
        #"{name: a, typed_config: {"@type": type.googleapis.com/envoy.config.rbac.v3.Action, name: \#(name), action: \#(action)}}"#
    }

    static func header(_ name: String) -> String {
        #"{name: h, typed_config: {"@type": type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput, header_name: "\#(name)"}}"#
    }

    /// `kind` is `network.v3.SourceIPInput`, `ssl.v3.UriSanInput`, ….
    static func input(_ kind: String) -> String {
        #"{name: i, typed_config: {"@type": type.googleapis.com/envoy.extensions.matching.common_inputs.\#(kind)}}"#
    }

    static func single(_ input: String, exact value: String) -> String {
        "{single_predicate: {input: \(input), value_match: {exact: \"\(value)\"}}}"
    }

    static func ip(_ input: String, _ ranges: String, statPrefix: String = "ipm") -> String {
        #"{single_predicate: {input: \#(input), custom_match: {name: ip, typed_config: {"@type": type.googleapis.com/envoy.extensions.matching.input_matchers.ip.v3.Ip, cidr_ranges: [\#(ranges)], stat_prefix: \#(statPrefix)}}}}"#
    }

    /// A `matcher_list` of (predicate, on_match) pairs, with an optional `on_no_match`.
    static func list(_ matchers: [(String, String)], onNoMatch: String? = nil) -> String {
        let items = matchers.map { "{predicate: \($0.0), on_match: \($0.1)}" }.joined(separator: ", ")
        return "{matcher_list: {matchers: [\(items)]}" + (onNoMatch.map { ", on_no_match: \($0)" } ?? "") + "}"
    }

    static func act(_ a: String, name: String = "p") -> String { "{action: \(action(a, name: name))}" }

    static func decode(_ text: String, forHTTP: Bool = true) throws -> RBACMatcher {
        let root = try #require(try ConfigDocument.parse(text))
        return try RBACMatcher.decode(ConfigValue(node: root, path: "matcher", session: ConfigSession()), forHTTP: forHTTP)
    }

    static func decodeError(_ text: String, forHTTP: Bool = true) -> ConfigError? {
        do {
            _ = try decode(text, forHTTP: forHTTP)
            return nil
        } catch let e as ConfigError {
            return e
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    static func request(headers: [(String, String)] = [], source: String = "10.0.0.1", destination: String = "10.0.0.2",
                        port: Int = 8080, security: ConnectionSecurity? = nil, sni: String? = nil,
                        path: String = "/") -> RBACRequest {
        var r = RBACEngineTests.request(source: source, destination: destination, port: port, security: security,
                                        sni: sni, path: path, headers: headers)
        if let forwarded = ConnectionManagerHeaders().forwardedAddress(r.http!.headers) { r.useForwardedFor(forwarded) }
        return r
    }

    static func outcome(_ matcher: RBACMatcher, _ request: RBACRequest) -> String {
        switch matcher.evaluate(request, ipParsingFailed: { _ in }) {
        case .action(let a): return "\(a.allows ? "ALLOW" : "DENY"):\(a.name)"
        case .noMatch: return "no match"
        case .undecided: return "undecided"
        }
    }

    // MARK: Evaluation (each table checked against Envoy 1.40)

    /// The first field matcher whose predicate matches decides, whatever follows.
    @Test(arguments: [
        ([("x", "aa")], "DENY:first"),
        ([("x", "bb")], "ALLOW:fallback"),
        ([], "ALLOW:fallback"),
    ])
    func theFirstMatchingFieldMatcherWins(headers: [(String, String)], expected: String) throws {
        let m = try Self.decode(Self.list([
            (Self.single(Self.header("x"), exact: "aa"), Self.act("DENY", name: "first")),
            (Self.single(Self.header("x"), exact: "aa"), Self.act("ALLOW", name: "second")),
        ], onNoMatch: Self.act("ALLOW", name: "fallback")))
        #expect(Self.outcome(m, Self.request(headers: headers)) == expected)
    }

    /// Without `on_no_match` a request nothing matches gets no action, and the engine denies it.
    @Test func noMatchWithoutOnNoMatchDenies() throws {
        let m = try Self.decode(Self.list([(Self.single(Self.header("x"), exact: "aa"), Self.act("ALLOW"))]))
        #expect(Self.outcome(m, Self.request(headers: [("x", "bb")])) == "no match")
        #expect(!m.allows(Self.request(headers: [("x", "bb")])))
        #expect(m.allows(Self.request(headers: [("x", "aa")])))
        // An empty matcher matches nothing; one with only on_no_match always takes it.
        #expect(!(try Self.decode("{}")).allows(Self.request()))
        #expect(try Self.decode("{on_no_match: \(Self.act("ALLOW"))}").allows(Self.request()))
        #expect(!(try Self.decode("{on_no_match: \(Self.act("DENY"))}")).allows(Self.request()))
    }

    /// A nested matcher that matches nothing lets the next field matcher try, then `on_no_match`.
    @Test func aNestedMatcherWithoutAMatchFallsThrough() throws {
        let nested = "{matcher: \(Self.list([(Self.single(Self.header("y"), exact: "bb"), Self.act("ALLOW", name: "inner"))]))}"
        let toNext = try Self.decode(Self.list([
            (Self.single(Self.header("x"), exact: "aa"), nested),
            (Self.single(Self.header("x"), exact: "aa"), Self.act("ALLOW", name: "second")),
        ], onNoMatch: Self.act("DENY", name: "nm")))
        #expect(Self.outcome(toNext, Self.request(headers: [("x", "aa")])) == "ALLOW:second")
        #expect(Self.outcome(toNext, Self.request(headers: [("x", "aa"), ("y", "bb")])) == "ALLOW:inner")
        let toOnNoMatch = try Self.decode(Self.list([(Self.single(Self.header("x"), exact: "aa"), nested)],
                                                    onNoMatch: Self.act("DENY", name: "nm")))
        #expect(Self.outcome(toOnNoMatch, Self.request(headers: [("x", "aa")])) == "DENY:nm")
    }

    /// The header input joins repeated headers with ",", lowercases its name, and is absent (matching no
    /// string, not even "") when the request has no such header.
    @Test func headerInputValues() throws {
        let joined = try Self.decode(Self.list([(Self.single(Self.header("X-Up"), exact: "a,b"), Self.act("ALLOW"))]))
        #expect(joined.allows(Self.request(headers: [("x-up", "a"), ("x-up", "b")])))
        #expect(joined.allows(Self.request(headers: [("x-up", "a,b")])))
        #expect(!joined.allows(Self.request(headers: [("x-up", "a")])))
        let notEmpty = try Self.decode(Self.list([
            ("{not_matcher: \(Self.single(Self.header("x"), exact: ""))}", Self.act("ALLOW")),
        ]))
        #expect(notEmpty.allows(Self.request()))
        #expect(!notEmpty.allows(Self.request(headers: [("x", "")])))
        #expect(notEmpty.allows(Self.request(headers: [("x", "v")])))
        let path = try Self.decode(Self.list([
            ("{and_matcher: {predicate: [{single_predicate: {input: \(Self.header(":path")), value_match: {prefix: /pub}}}, \(Self.single(Self.header(":method"), exact: "GET"))]}}",
             Self.act("ALLOW")),
        ]))
        #expect(path.allows(Self.request(path: "/public")))
        #expect(!path.allows(Self.request(path: "/private")))
    }

    /// An exact map takes the equal key (a nested matcher without a match falls back to `on_no_match`, as does
    /// an absent input); a prefix map tries the keys that prefix the input, longest first.
    @Test func matcherTrees() throws {
        let nested = "{matcher: \(Self.list([(Self.single(Self.header("y"), exact: "yy"), Self.act("DENY", name: "inner"))]))}"
        let exact = try Self.decode("""
            {matcher_tree: {input: \(Self.header("x")), exact_match_map: {map: {aa: \(nested), bb: \(Self.act("DENY", name: "bb")), "": \(Self.act("DENY", name: "empty"))}}},
             on_no_match: \(Self.act("ALLOW", name: "nm"))}
            """)
        #expect(Self.outcome(exact, Self.request(headers: [("x", "aa")])) == "ALLOW:nm")
        #expect(Self.outcome(exact, Self.request(headers: [("x", "aa"), ("y", "yy")])) == "DENY:inner")
        #expect(Self.outcome(exact, Self.request(headers: [("x", "bb")])) == "DENY:bb")
        #expect(Self.outcome(exact, Self.request(headers: [("x", "cc")])) == "ALLOW:nm")
        #expect(Self.outcome(exact, Self.request(headers: [("x", "")])) == "DENY:empty")
        #expect(Self.outcome(exact, Self.request()) == "ALLOW:nm")
        let prefix = try Self.decode("""
            {matcher_tree: {input: \(Self.header(":path")), prefix_match_map: {map: {"/a": \(Self.act("ALLOW", name: "short")), "/ab": \(nested), "/abc": \(Self.act("DENY", name: "long"))}}},
             on_no_match: \(Self.act("DENY", name: "nm"))}
            """)
        #expect(Self.outcome(prefix, Self.request(path: "/abx")) == "ALLOW:short")
        #expect(Self.outcome(prefix, Self.request(headers: [("y", "yy")], path: "/abx")) == "DENY:inner")
        #expect(Self.outcome(prefix, Self.request(path: "/abcd")) == "DENY:long")
        #expect(Self.outcome(prefix, Self.request(path: "/b")) == "DENY:nm")
        let everything = try Self.decode(
            "{matcher_tree: {input: \(Self.header(":path")), prefix_match_map: {map: {\"\": \(Self.act("ALLOW", name: "all")), \"/ab\": \(Self.act("DENY"))}}}}")
        #expect(Self.outcome(everything, Self.request(path: "/x")) == "ALLOW:all")
        #expect(Self.outcome(everything, Self.request(path: "/abx")) == "DENY:p")
    }

    /// `SourceIPInput` is the `x-forwarded-for` address when there is one (with port 0), as `remote_ip`;
    /// `DirectSourceIPInput` is the peer. IPv6 is written as Envoy writes it.
    @Test(arguments: [
        ("network.v3.SourceIPInput", [("x-forwarded-for", "10.9.9.9")], "10.9.9.9"),
        ("network.v3.SourceIPInput", [], "10.0.0.1"),
        ("network.v3.SourceIPInput", [("x-forwarded-for", "bogus")], "10.0.0.1"),
        ("network.v3.SourceIPInput", [("x-forwarded-for", "1.2.3.4, 2001:DB8:0::1")], "2001:db8::1"),
        ("network.v3.SourcePortInput", [("x-forwarded-for", "10.9.9.9")], "0"),
        ("network.v3.SourcePortInput", [], "40000"),
        ("network.v3.DirectSourceIPInput", [("x-forwarded-for", "10.9.9.9")], "10.0.0.1"),
        ("network.v3.DestinationIPInput", [], "10.0.0.2"),
        ("network.v3.DestinationPortInput", [], "8080"),
    ])
    func connectionInputs(kind: String, headers: [(String, String)], value: String) throws {
        let m = try Self.decode(Self.list([(Self.single(Self.input(kind), exact: value), Self.act("ALLOW"))]))
        #expect(m.allows(Self.request(headers: headers)))
        #expect(m.usesRemoteIP == (kind == "network.v3.SourceIPInput" || kind == "network.v3.SourcePortInput"))
    }

    @Test func ipv6AddressesAreWrittenAsEnvoyWritesThem() {
        #expect(IPAddress(parsing: "2001:DB8:0:0:0:0:0:1")?.text == "2001:db8::1")
        #expect(IPAddress(parsing: "::1")?.text == "::1")
        #expect(IPAddress(parsing: "::ffff:10.1.2.3")?.text == "::ffff:10.1.2.3")
        #expect(IPAddress(parsing: "192.168.0.255")?.text == "192.168.0.255")
    }

    /// No SNI and TLS values that are missing are absent; on a plaintext connection the TLS inputs are not
    /// available at all, which leaves the whole match undecided: denied, even with `on_no_match: ALLOW`
    /// (an `or` that matches elsewhere still matches).
    @Test func tlsInputsOnPlaintextLeaveTheMatchUndecided() throws {
        let uri = Self.single(Self.input("ssl.v3.UriSanInput"), exact: "zz")
        let hx = Self.single(Self.header("x"), exact: "aa")
        let allow = Self.act("ALLOW", name: "nm")
        let cases: [(String, [(String, String)], String)] = [
            (Self.list([(uri, Self.act("DENY"))], onNoMatch: allow), [], "undecided"),
            (Self.list([("{not_matcher: \(uri)}", Self.act("ALLOW"))], onNoMatch: allow), [], "undecided"),
            (Self.list([(hx, Self.act("ALLOW", name: "x")), (uri, Self.act("DENY"))], onNoMatch: allow), [("x", "aa")], "ALLOW:x"),
            (Self.list([(hx, Self.act("ALLOW", name: "x")), (uri, Self.act("DENY"))], onNoMatch: allow), [], "undecided"),
            (Self.list([("{or_matcher: {predicate: [\(uri), \(hx)]}}", Self.act("ALLOW", name: "or"))], onNoMatch: Self.act("DENY")), [("x", "aa")], "ALLOW:or"),
            (Self.list([("{or_matcher: {predicate: [\(uri), \(hx)]}}", Self.act("ALLOW", name: "or"))], onNoMatch: Self.act("DENY")), [], "undecided"),
            (Self.list([("{and_matcher: {predicate: [\(hx), \(uri)]}}", Self.act("DENY"))], onNoMatch: allow), [], "ALLOW:nm"),
            (Self.list([("{and_matcher: {predicate: [\(uri), \(hx)]}}", Self.act("DENY"))], onNoMatch: allow), [], "undecided"),
            ("{matcher_tree: {input: \(Self.input("ssl.v3.SubjectInput")), exact_match_map: {map: {zz: \(Self.act("DENY"))}}}, on_no_match: \(allow)}", [], "undecided"),
            (Self.list([(hx, "{matcher: \(Self.list([(uri, Self.act("DENY"))]))}"), (hx, Self.act("ALLOW"))], onNoMatch: allow), [("x", "aa")], "undecided"),
            (Self.list([("{not_matcher: \(Self.single(Self.input("network.v3.ServerNameInput"), exact: ""))}", Self.act("ALLOW", name: "nosni"))]), [], "ALLOW:nosni"),
        ]
        for (text, headers, expected) in cases {
            let m = try Self.decode(text)
            #expect(Self.outcome(m, Self.request(headers: headers)) == expected, "\(text)")
            #expect(m.allows(Self.request(headers: headers)) == expected.hasPrefix("ALLOW"))
        }
    }

    /// On TLS the SAN inputs join every SAN with ","; the subject is RFC 2253; without a client certificate
    /// they are absent (so `not_matcher` of anything matches).
    @Test func tlsInputsOnTLS() throws {
        let client = RBACEngineTests.spiffeClient
        let uris = client.peerURISANs.joined(separator: ",")
        for (kind, value) in [("ssl.v3.UriSanInput", uris), ("ssl.v3.DnsSanInput", "client.example"),
                              ("ssl.v3.SubjectInput", "CN=client-one,O=acme")] {
            let m = try Self.decode(Self.list([(Self.single(Self.input(kind), exact: value), Self.act("ALLOW"))]))
            #expect(m.allows(Self.request(security: client)), "\(kind)")
            let absent = try Self.decode(Self.list([
                ("{not_matcher: \(Self.single(Self.input(kind), exact: ""))}", Self.act("ALLOW")),
            ]))
            #expect(absent.allows(Self.request(security: ConnectionSecurity())), "\(kind)")
        }
        let sni = try Self.decode(Self.list([(Self.single(Self.input("network.v3.ServerNameInput"), exact: "web.example"), Self.act("ALLOW"))]))
        #expect(sni.allows(Self.request(sni: "web.example")))
        #expect(!sni.allows(Self.request()))
    }

    /// The `Ip` matcher: an address input in a range matches; a text that is not an address does not match
    /// and is reported under the matcher's stat prefix; an absent input is neither.
    @Test func ipMatcher() throws {
        let m = try Self.decode(Self.list([
            (Self.ip(Self.header("x"), "{address_prefix: 10.0.0.0, prefix_len: 8}", statPrefix: "hdr"), Self.act("ALLOW", name: "ten")),
            (Self.ip(Self.input("network.v3.DirectSourceIPInput"), "{address_prefix: 192.168.0.0, prefix_len: 16}, {address_prefix: \"::1\", prefix_len: 128}"),
             Self.act("DENY", name: "peer")),
        ]))
        #expect(m.ipStatPrefixes == ["hdr", "ipm"])
        var failures: [String] = []
        func run(_ r: RBACRequest) -> String {
            switch m.evaluate(r, ipParsingFailed: { failures.append($0) }) {
            case .action(let a): return a.name
            default: return "none"
            }
        }
        #expect(run(Self.request(headers: [("x", "10.1.2.3")])) == "ten")
        #expect(run(Self.request(headers: [("x", "11.1.2.3")])) == "none")
        #expect(failures.isEmpty)
        #expect(run(Self.request(headers: [("x", "notip")])) == "none")
        #expect(run(Self.request(headers: [("x", "10.1.2.3/8")])) == "none")
        #expect(failures == ["hdr", "hdr"])
        #expect(run(Self.request(source: "192.168.4.4")) == "peer")
        #expect(run(Self.request(source: "::1")) == "peer")
        #expect(failures == ["hdr", "hdr"])
    }

    // MARK: Loading

    /// envoyproxy/examples' rbac sandbox: requests whose Referer does not match the docs URL are denied.
    static let exampleMatcher = """
        matcher:
                        matcher_list:
                          matchers:
                          - predicate:
                              not_matcher:
                                single_predicate:
                                  input:
                                    name: envoy.matching.inputs.request_headers
                                    typed_config:
                                      "@type": type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput
                                      header_name: referer
                                  value_match:
                                    safe_regex:
                                      google_re2: {}
                                      regex: https?://(www.)?envoyproxy.io/docs/envoy.*
                            on_match:
                              action:
                                name: action
                                typed_config:
                                  "@type": type.googleapis.com/envoy.config.rbac.v3.Action
                                  name: illegal-referer
                                  action: DENY
                        on_no_match:
                          action:
                            name: action
                            typed_config:
                              "@type": type.googleapis.com/envoy.config.rbac.v3.Action
                              name: all-pass
                              action: ALLOW
        """

    @Test func theExampleLoadsAndDecides() throws {
        let text = RBACConfigTests.hcm(httpFilters: RBACConfigTests.http([Self.exampleMatcher]))
        let h = try RBACConfigTests().hcmConfig(text)
        let config = try #require(h.httpRBAC.first)
        let matcher = try #require(config.matcher)
        #expect(config.rules == nil)
        guard case .matcher = config.engine else {
            Issue.record("the matcher is not the engine")
            return
        }
        #expect(Self.outcome(matcher, Self.request()) == "DENY:illegal-referer")
        #expect(Self.outcome(matcher, Self.request(headers: [("referer", "https://www.envoyproxy.io/docs/envoy/latest")]))
            == "ALLOW:all-pass")
        #expect(Self.outcome(matcher, Self.request(headers: [("referer", "https://example.com/")])) == "DENY:illegal-referer")
        try ConfigErrorTests.expectNoFieldGaps(text)
    }

    /// Every input, map and matcher in one config, in both filters: nothing is left out of the field lists.
    @Test func everySupportedPartLoadsInBothFilters() throws {
        let network = ["SourceIPInput", "SourcePortInput", "DirectSourceIPInput", "DestinationIPInput",
                       "DestinationPortInput", "ServerNameInput"].map { "network.v3.\($0)" }
            + ["UriSanInput", "DnsSanInput", "SubjectInput"].map { "ssl.v3.\($0)" }
        let predicates = network.map { Self.single(Self.input($0), exact: "v") }
            + [Self.ip(Self.input("network.v3.SourceIPInput"), "{address_prefix: 10.0.0.0}")]
        let matcher = Self.list(
            [("{or_matcher: {predicate: [\(predicates.joined(separator: ", "))]}}", Self.act("DENY"))],
            onNoMatch: "{matcher: {matcher_tree: {input: \(Self.input("network.v3.DestinationPortInput")), exact_match_map: {map: {\"80\": \(Self.act("ALLOW"))}}}}}")
        let httpMatcher = Self.list(
            [("{and_matcher: {predicate: [\(Self.single(Self.header("x"), exact: "v")), {not_matcher: \(predicates[0])}]}}", Self.act("ALLOW"))],
            onNoMatch: "{matcher: {matcher_tree: {input: \(Self.header(":path")), prefix_match_map: {map: {\"/\": \(Self.act("DENY"))}}}}}")
        let text = RBACConfigTests.hcm(
            networkFilters: RBACConfigTests.network(["stat_prefix: net", "matcher: \(matcher)", "shadow_matcher: \(matcher)"]),
            httpFilters: RBACConfigTests.http(["matcher: \(httpMatcher)", "shadow_matcher: \(matcher)"]))
        let c = try RBACConfigTests().chain(text)
        #expect(c.networkRBAC.first?.matcher != nil)
        #expect(c.networkRBAC.first?.shadowMatcher != nil)
        #expect(c.networkRBAC.first?.ipStatPrefixes == ["ipm", "ipm"])
        try ConfigErrorTests.expectNoFieldGaps(text)
    }

    /// With both, Envoy validates the rules and enforces the matcher.
    @Test func aMatcherWinsOverRules() throws {
        let text = RBACConfigTests.hcm(httpFilters: RBACConfigTests.http([
            "rules: {action: DENY, policies: {all: {permissions: [{any: true}], principals: [{any: true}]}}}",
            "matcher: {on_no_match: \(Self.act("ALLOW"))}",
        ]))
        let config = try #require(try RBACConfigTests().hcmConfig(text).httpRBAC.first)
        #expect(config.engine?.allows(Self.request(), ipParsingFailed: { _ in }) == true)
        let badRules = RBACConfigTests.hcm(httpFilters: RBACConfigTests.http([
            "rules: {policies: {p: {permissions: [], principals: [{any: true}]}}}",
            "matcher: {on_no_match: \(Self.act("ALLOW"))}",
        ]))
        #expect(RBACConfigTests().error(badRules)?.path == RBACConfigTests.httpRBACPath + ".rules.policies.p.permissions")
    }

    /// Envoy's validation of the match tree, field by field: (matcher text, path below `matcher`, message part).
    static let validationCases: [(String, String, String)] = [
        ("{matcher_list: {matchers: []}}", ".matcher_list.matchers", "at least 1 item"),
        ("{matcher_list: {matchers: [{on_match: \(act("ALLOW"))}]}}", ".matcher_list.matchers[0]", "'predicate'"),
        ("{matcher_list: {matchers: [{predicate: \(single(header("x"), exact: "v"))}]}}", ".matcher_list.matchers[0]", "'on_match'"),
        ("{matcher_list: {matchers: [{predicate: {}, on_match: \(act("ALLOW"))}]}}", ".matcher_list.matchers[0].predicate",
         "one of single_predicate, or_matcher, and_matcher, not_matcher is required"),
        ("{matcher_list: {matchers: [{predicate: {or_matcher: {predicate: [\(single(header("x"), exact: "v"))]}}, on_match: \(act("ALLOW"))}]}}",
         ".matcher_list.matchers[0].predicate.or_matcher.predicate", "at least 2 items"),
        ("{matcher_list: {matchers: [{predicate: {and_matcher: {predicate: []}}, on_match: \(act("ALLOW"))}]}}",
         ".matcher_list.matchers[0].predicate.and_matcher.predicate", "at least 2 items"),
        ("{matcher_list: {matchers: [{predicate: {not_matcher: {}}, on_match: \(act("ALLOW"))}]}}",
         ".matcher_list.matchers[0].predicate.not_matcher", "is required"),
        ("{matcher_list: {matchers: [{predicate: {single_predicate: {value_match: {exact: v}}}, on_match: \(act("ALLOW"))}]}}",
         ".matcher_list.matchers[0].predicate.single_predicate", "'input'"),
        ("{matcher_list: {matchers: [{predicate: {single_predicate: {input: \(header("x"))}}, on_match: \(act("ALLOW"))}]}}",
         ".matcher_list.matchers[0].predicate.single_predicate", "one of value_match, custom_match is required"),
        ("{on_no_match: {}}", ".on_no_match", "one of matcher, action is required"),
        ("{on_no_match: {action: \(action("ALLOW")), matcher: {}}}", ".on_no_match.action", "only one of"),
        ("{on_no_match: {action: \(action("ALLOW")), keep_matching: true}}", ".on_no_match.keep_matching",
         "keep_matching is not supported in this context"),
        ("{on_no_match: \(act("LOG"))}", ".on_no_match.action.typed_config.action", "LOG"),
        ("{on_no_match: \(act("MAYBE"))}", ".on_no_match.action.typed_config.action", "unknown value 'MAYBE'"),
        (#"{on_no_match: {action: {name: a, typed_config: {"@type": type.googleapis.com/envoy.config.rbac.v3.Action}}}}"#,
         ".on_no_match.action.typed_config", "'name' must be at least 1 character"),
        (#"{on_no_match: {action: {typed_config: {"@type": type.googleapis.com/envoy.config.rbac.v3.Action, name: p}}}}"#,
         ".on_no_match.action", "'name' must be at least 1 character"),
        ("{on_no_match: {action: {name: a}}}", ".on_no_match.action", "'typed_config'"),
        (#"{on_no_match: {action: {name: a, typed_config: {"@type": type.googleapis.com/google.protobuf.StringValue, value: x}}}}"#,
         ".on_no_match.action.typed_config", "Didn't find a registered implementation for 'a' with type URL: 'google.protobuf.StringValue'"),
        (#"{on_no_match: {action: {name: a, typed_config: {"@type": type.googleapis.com/envoy.config.rbac.v3.Action, name: p, colour: red}}}}"#,
         ".on_no_match.action.typed_config.colour", "unknown field 'colour'"),
        ("{matcher_lists: {}}", ".matcher_lists", "unknown field 'matcher_lists'; did you mean 'matcher_list'?"),
        // Inputs.
        ("{matcher_list: {matchers: [{predicate: \(single(input("network.v3.TransportProtocolInput"), exact: "tls")), on_match: \(act("ALLOW"))}]}}",
         ".matcher_list.matchers[0].predicate.single_predicate.input.typed_config",
         "Didn't find a registered implementation for 'i' with type URL: 'envoy.extensions.matching.common_inputs.network.v3.TransportProtocolInput'"),
        ("{matcher_list: {matchers: [{predicate: \(single(input("network.v3.ApplicationProtocolInput"), exact: "h2")), on_match: \(act("ALLOW"))}]}}",
         ".matcher_list.matchers[0].predicate.single_predicate.input.typed_config", "Didn't find a registered implementation"),
        ("{matcher_list: {matchers: [{predicate: \(single(input("network.v3.SourceTypeInput"), exact: "local")), on_match: \(act("ALLOW"))}]}}",
         ".matcher_list.matchers[0].predicate.single_predicate.input.typed_config",
         "RBAC HTTP filter cannot match on 'type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.SourceTypeInput'"),
        (#"{matcher_list: {matchers: [{predicate: {single_predicate: {input: {name: t, typed_config: {"@type": type.googleapis.com/envoy.type.matcher.v3.HttpRequestTrailerMatchInput, header_name: x}}, value_match: {exact: v}}}, on_match: \#(act("ALLOW"))}]}}"#,
         ".matcher_list.matchers[0].predicate.single_predicate.input.typed_config", "RBAC HTTP filter cannot match on"),
        (#"{matcher_list: {matchers: [{predicate: {single_predicate: {input: {name: f, typed_config: {"@type": type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.FilterStateInput, key: k}}, value_match: {exact: v}}}, on_match: \#(act("ALLOW"))}]}}"#,
         ".matcher_list.matchers[0].predicate.single_predicate.input.typed_config", "not supported by Pilotfish yet"),
        (#"{matcher_list: {matchers: [{predicate: {single_predicate: {input: {name: h, typed_config: {"@type": type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput, header_name: x, foo: 1}}, value_match: {exact: v}}}, on_match: \#(act("ALLOW"))}]}}"#,
         ".matcher_list.matchers[0].predicate.single_predicate.input.typed_config.foo", "unknown field 'foo'"),
        // Value and custom matchers.
        ("{matcher_list: {matchers: [{predicate: {single_predicate: {input: \(header("x")), value_match: {safe_regex: {regex: a}}}}, on_match: \(act("ALLOW"))}]}}",
         ".matcher_list.matchers[0].predicate.single_predicate.value_match.safe_regex", "google_re2"),
        ("{matcher_list: {matchers: [{predicate: {single_predicate: {input: \(header("x")), value_match: {safe_regex: {google_re2: {}, regex: \"a(\"}}}}, on_match: \(act("ALLOW"))}]}}",
         ".matcher_list.matchers[0].predicate.single_predicate.value_match.safe_regex.regex", "invalid regex"),
        ("{matcher_list: {matchers: [{predicate: {single_predicate: {input: \(header("x")), value_match: {prefix: \"\"}}}, on_match: \(act("ALLOW"))}]}}",
         ".matcher_list.matchers[0].predicate.single_predicate.value_match.prefix", "must not be empty"),
        ("{matcher_list: {matchers: [{predicate: {single_predicate: {input: \(header("x")), value_match: {}}}, on_match: \(act("ALLOW"))}]}}",
         ".matcher_list.matchers[0].predicate.single_predicate.value_match", "is required"),
        (#"{matcher_list: {matchers: [{predicate: {single_predicate: {input: \#(header("x")), value_match: {custom: {name: c, typed_config: {"@type": type.googleapis.com/google.protobuf.StringValue}}}}}, on_match: \#(act("ALLOW"))}]}}"#,
         ".matcher_list.matchers[0].predicate.single_predicate.value_match.custom", "not supported by Pilotfish yet"),
        (#"{matcher_list: {matchers: [{predicate: {single_predicate: {input: \#(header("x")), custom_match: {name: c, typed_config: {"@type": type.googleapis.com/envoy.extensions.matching.input_matchers.runtime_fraction.v3.RuntimeFraction}}}}, on_match: \#(act("ALLOW"))}]}}"#,
         ".matcher_list.matchers[0].predicate.single_predicate.custom_match.typed_config", "not supported by Pilotfish"),
        ("{matcher_list: {matchers: [{predicate: \(ip(header("x"), "")), on_match: \(act("ALLOW"))}]}}",
         ".matcher_list.matchers[0].predicate.single_predicate.custom_match.typed_config.cidr_ranges", "at least 1 item"),
        ("{matcher_list: {matchers: [{predicate: \(ip(header("x"), "{address_prefix: 10.0.0.x, prefix_len: 8}")), on_match: \(act("ALLOW"))}]}}",
         ".matcher_list.matchers[0].predicate.single_predicate.custom_match.typed_config.cidr_ranges[0]",
         "malformed IP address: 10.0.0.x"),
        ("{matcher_list: {matchers: [{predicate: \(ip(header("x"), "{address_prefix: 10.0.0.0}", statPrefix: "\"\"")), on_match: \(act("ALLOW"))}]}}",
         ".matcher_list.matchers[0].predicate.single_predicate.custom_match.typed_config.stat_prefix", "at least 1 character"),
        // Trees.
        ("{matcher_tree: {input: \(header("x")), exact_match_map: {map: {}}}}", ".matcher_tree.exact_match_map.map", "at least 1 pair"),
        ("{matcher_tree: {input: \(header("x"))}}", ".matcher_tree", "one of exact_match_map, prefix_match_map, custom_match is required"),
        ("{matcher_tree: {exact_match_map: {map: {a: \(act("ALLOW"))}}}}", ".matcher_tree", "'input'"),
        (#"{matcher_tree: {input: \#(header("x")), custom_match: {name: trie, typed_config: {"@type": type.googleapis.com/xds.type.matcher.v3.IPMatcher}}}}"#,
         ".matcher_tree.custom_match", "not supported by Pilotfish yet"),
        ("{matcher_list: {matchers: [{predicate: \(single(header("x"), exact: "v")), on_match: \(act("ALLOW"))}]}, matcher_tree: {input: \(header("x")), exact_match_map: {map: {a: \(act("ALLOW"))}}}}",
         ".matcher_tree", "only one of"),
    ]

    @Test(arguments: RBACMatcherTests.validationCases)
    func envoysValidationNamesTheField(text: String, path: String, message: String) throws {
        let e = try #require(Self.decodeError(text))
        #expect(e.path == "matcher" + path)
        #expect(e.message.contains(message), "\(e.message)")
    }

    /// The network filter has no request headers: Envoy refuses header inputs there, and so do we.
    @Test func theNetworkFilterRefusesRequestHeaders() throws {
        let text = Self.list([(Self.single(Self.header("x"), exact: "v"), Self.act("ALLOW"))])
        let e = try #require(Self.decodeError(text, forHTTP: false))
        #expect(e.path == "matcher.matcher_list.matchers[0].predicate.single_predicate.input.typed_config")
        #expect(e.message.contains(
            "RBAC network filter cannot match 'type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput'"))
        let chain = RBACConfigTests.tcp(networkFilters: RBACConfigTests.network(["stat_prefix: s", "shadow_matcher: \(text)"]))
        #expect(RBACConfigTests().error(chain)?.path
            == RBACConfigTests.chainPath + "[0].typed_config.shadow_matcher.matcher_list.matchers[0].predicate.single_predicate.input.typed_config")
        // Connection inputs are fine there.
        _ = try Self.decode(Self.list([(Self.single(Self.input("network.v3.SourceIPInput"), exact: "v"), Self.act("ALLOW"))]),
                            forHTTP: false)
    }
}

/// The matcher form through the real proxy, with Envoy 1.40's answers and counters for the same configs.
@Suite(.serialized) struct RBACMatcherIntegrationTests {
    static let rbacType = RBACIntegrationTests.rbacType

    /// An HTTP listener (`ingress_http`) whose RBAC filter has the given typed_config lines.
    static func httpConfig(backend: Int, rbac: [String]) -> String {
        let lines = rbac.map { "              \($0)\n" }.joined()
        return """
            admin:
              address: {socket_address: {address: 127.0.0.1, port_value: 0}}
            static_resources:
              listeners:
              - name: web
                address: {socket_address: {address: 127.0.0.1, port_value: 0}}
                filter_chains:
                - filters:
                  - name: envoy.filters.network.http_connection_manager
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                      stat_prefix: ingress_http
                      route_config:
                        virtual_hosts:
                        - name: all
                          domains: ["*"]
                          routes: [{match: {prefix: "/"}, route: {cluster: backend}}]
                      http_filters:
                      - name: envoy.filters.http.rbac
                        typed_config:
                          "@type": \(rbacType)

            """ + lines + """
                      - name: envoy.filters.http.router
                        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
              clusters:
              - {name: backend, connect_timeout: 1s, type: STATIC, load_assignment: {cluster_name: backend, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: \(backend)}}}}]}]}}
            """
    }

    /// envoyproxy/examples' rbac sandbox, as its walkthrough runs it: no Referer is denied with Envoy's 403,
    /// the docs Referer passes, and the counters are the rules form's.
    @Test func theExamplesRefererMatcher() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: Self.httpConfig(backend: backend.port, rbac: [RBACMatcherTests.exampleMatcher]))
        defer { proxy.shutdown() }
        #expect(try proxy.stat("http.ingress_http.rbac.allowed") == 0)
        #expect(try proxy.stat("http.ingress_http.rbac.shadow_allowed") == 0)

        let client = try proxy.client()
        defer { client.close() }
        try client.send(RawClient.request("GET", "/"))
        let denied = try client.readResponse()
        #expect(denied.status == 403)
        #expect(denied.bodyString == "RBAC: access denied")
        #expect(denied.header("content-type") == "text/plain")
        #expect(denied.header("content-length") == "19")
        try client.send(RawClient.request("GET", "/", headers: ["referer: https://www.envoyproxy.io/docs/envoy"]))
        let allowed = try client.readResponse()
        #expect(allowed.status == 200)
        #expect(allowed.bodyString == TestBackend.helloBody)
        #expect(try proxy.fetch("GET", "/", headers: ["referer: https://example.com/docs/envoy"]).status == 403)

        let stats = try proxy.stats()
        #expect(stats["http.ingress_http.rbac.allowed"] == "1")
        #expect(stats["http.ingress_http.rbac.denied"] == "2")
        #expect(stats["http.ingress_http.rbac.shadow_allowed"] == "0")
        #expect(stats["http.ingress_http.rbac.shadow_denied"] == "0")
        #expect(backend.requestCount == 1)
    }

    /// A shadow matcher counts under `shadow_rules_stat_prefix` and never decides; an `Ip` matcher's
    /// `<stat_prefix>.ip_parsing_failed` exists from start-up and counts texts that are not addresses.
    @Test func shadowMatcherAndIPMatcherCounters() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let enforced = RBACMatcherTests.list(
            [(RBACMatcherTests.ip(RBACMatcherTests.header("x-client"), "{address_prefix: 10.0.0.0, prefix_len: 8}", statPrefix: "client_ip"),
              RBACMatcherTests.act("DENY", name: "ten"))],
            onNoMatch: RBACMatcherTests.act("ALLOW"))
        let shadow = RBACMatcherTests.list(
            [(RBACMatcherTests.single(RBACMatcherTests.header("x"), exact: "aa"), RBACMatcherTests.act("ALLOW"))])
        let proxy = try ProxyHarness(yaml: Self.httpConfig(backend: backend.port, rbac: [
            "matcher: \(enforced)", "shadow_matcher: \(shadow)", "rules_stat_prefix: en_", "shadow_rules_stat_prefix: sh_",
        ]))
        defer { proxy.shutdown() }
        #expect(try proxy.stat("client_ip.ip_parsing_failed") == 0)
        #expect(try proxy.fetch("GET", "/", headers: ["x: aa"]).status == 200)
        #expect(try proxy.fetch("GET", "/", headers: ["x-client: 10.1.2.3"]).status == 403)
        #expect(try proxy.fetch("GET", "/", headers: ["x-client: not-an-ip"]).status == 200)
        let stats = try proxy.stats()
        #expect(stats["http.ingress_http.rbac.en_.allowed"] == "2")
        #expect(stats["http.ingress_http.rbac.en_.denied"] == "1")
        #expect(stats["http.ingress_http.rbac.sh_.shadow_allowed"] == "1")
        #expect(stats["http.ingress_http.rbac.sh_.shadow_denied"] == "2")
        #expect(stats["client_ip.ip_parsing_failed"] == "1")
        let prometheus = try proxy.admin("GET", "/stats/prometheus").bodyString
        #expect(prometheus.contains("envoy_client_ip_ip_parsing_failed{} 1"))
        #expect(prometheus.contains(
            #"envoy_http_rbac_shadow_denied{envoy_rbac_http_prefix="sh_",envoy_http_conn_manager_prefix="ingress_http"} 2"#))
    }

    /// The network filter's matcher decides on the connection: no action closes it unanswered.
    @Test func networkMatcherAllowsAndDeniesConnections() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let allowLoopback = RBACMatcherTests.list([
            (RBACMatcherTests.ip(RBACMatcherTests.input("network.v3.SourceIPInput"), "{address_prefix: 127.0.0.0, prefix_len: 8}"),
             RBACMatcherTests.act("ALLOW")),
        ])
        let proxy = try ProxyHarness(yaml: RBACIntegrationTests.tcpConfig(upstream: echo.port, rules: "{}")
            .replacingOccurrences(of: "rules: {}", with: "matcher: \(allowLoopback)"))
        defer { proxy.shutdown() }
        let payload = Array("ping through the matcher".utf8)
        #expect(try BlockingSocket.roundTrip(port: proxy.port, sending: payload, halfClose: true) == payload)
        #expect(try proxy.stat("tcp_rbac.rbac.allowed") == 1)

        let denyAll = RBACMatcherTests.list([
            (RBACMatcherTests.single(RBACMatcherTests.input("network.v3.DestinationPortInput"), exact: "1"), RBACMatcherTests.act("ALLOW")),
        ])
        let denying = try ProxyHarness(yaml: RBACIntegrationTests.tcpConfig(upstream: echo.port, rules: "{}")
            .replacingOccurrences(of: "rules: {}", with: "matcher: \(denyAll)"))
        defer { denying.shutdown() }
        let client = try BlockingSocket(port: denying.port, timeout: 5)
        defer { client.close() }
        try client.write(Array("hello".utf8))
        #expect(try client.readToEOF().isEmpty)
        #expect(try denying.stat("tcp_rbac.rbac.denied") == 1)
        #expect(try denying.stat("cluster.echo.upstream_cx_total") == 0)
    }
}
