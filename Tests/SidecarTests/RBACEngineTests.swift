import NIOCore
import NIOHTTP1
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// The policy engine without sockets: Envoy 1.40's answers for the same rules and requests.
@Suite struct RBACEngineTests {
    static func exact(_ s: String) -> StringMatcher { StringMatcher(kind: .exact(s), ignoreCase: false) }
    static func prefix(_ s: String) -> StringMatcher { StringMatcher(kind: .prefix(s), ignoreCase: false) }

    static func range(_ address: String, _ length: Int) -> IPRange {
        IPRange(IPAddress(parsing: address)!, prefixLength: length)
    }

    static func address(_ ip: String, _ port: Int) -> SocketAddress { try! SocketAddress(ipAddress: ip, port: port) }

    /// A request from `source` to `destination`, with an HTTP request when `path` is given.
    static func request(
        source: String = "10.0.0.1", destination: String = "10.0.0.2", port: Int = 8080,
        security: ConnectionSecurity? = nil, sni: String? = nil,
        method: String = "GET", path: String? = nil, authority: String = "web.example", headers: [(String, String)] = []
    ) -> RBACRequest {
        let http = path.map {
            RouteRequest(method: method, path: $0, authority: authority,
                         scheme: headers.first { $0.0 == "x-forwarded-proto" }?.1 ?? "http",
                         headers: HTTPHeaders(headers))
        }
        return RBACRequest(source: address(source, 40000), destination: address(destination, port), security: security,
                           requestedServerName: sni, http: http)
    }

    static func rules(_ action: RBACRules.Action, _ permissions: [RBACPermission], _ principals: [RBACPrincipal])
        -> RBACRules
    {
        RBACRules(action: action, policies: [RBACPolicy(name: "p", permissions: permissions, principals: principals)])
    }

    /// A client certificate with two SPIFFE IDs and a DNS name, as a handshake would report it.
    static let spiffeClient = ConnectionSecurity(
        peerCertificatePresented: true,
        peerURISANs: ["spiffe://cluster.local/ns/default/sa/first", "spiffe://cluster.local/ns/default/sa/second"],
        peerDNSSANs: ["client.example"], peerSubject: "CN=client-one,O=acme")

    static func authenticated(_ matcher: StringMatcher?, _ security: ConnectionSecurity?) -> Bool {
        rules(.ALLOW, [.any], [.authenticated(matcher)]).allows(request(security: security))
    }

    // MARK: Actions

    @Test func allowGrantsOnlyWhenAPolicyMatchesAndDenyTheOpposite() {
        let fromTen: [RBACPrincipal] = [.sourceIP(Self.range("10.0.0.0", 8))]
        #expect(Self.rules(.ALLOW, [.any], fromTen).allows(Self.request(source: "10.1.1.1")))
        #expect(!Self.rules(.ALLOW, [.any], fromTen).allows(Self.request(source: "192.168.1.1")))
        #expect(!Self.rules(.DENY, [.any], fromTen).allows(Self.request(source: "10.1.1.1")))
        #expect(Self.rules(.DENY, [.any], fromTen).allows(Self.request(source: "192.168.1.1")))
    }

    @Test func rulesWithoutPoliciesDenyAllUnderAllowAndAllowAllUnderDeny() {
        #expect(!RBACRules(action: .ALLOW, policies: []).allows(Self.request()))
        #expect(RBACRules(action: .DENY, policies: []).allows(Self.request()))
    }

    @Test func aPolicyNeedsAPermissionAndAPrincipalToMatch() {
        let policy = RBACPolicy(name: "p", permissions: [.destinationPort(80), .destinationPort(8080)],
                                principals: [.sourceIP(Self.range("10.9.0.0", 16)), .any])
        #expect(policy.matches(Self.request(port: 8080)))
        #expect(!policy.matches(Self.request(port: 9090)))
        let noPrincipal = RBACPolicy(name: "p", permissions: [.any], principals: [.not(.any)])
        #expect(!noPrincipal.matches(Self.request()))
    }

    @Test func policiesAreTriedInNameOrder() {
        let r = RBACRules(action: .ALLOW, policies: [
            RBACPolicy(name: "zeta", permissions: [.any], principals: [.any]),
            RBACPolicy(name: "alpha", permissions: [.any], principals: [.any]),
        ])
        #expect(r.matchingPolicy(Self.request())?.name == "alpha")
    }

    @Test func andOrNotCompose() {
        let and: RBACPermission = .and([.destinationPort(8080), .not(.destinationIP(Self.range("10.0.0.0", 24)))])
        #expect(!and.matches(Self.request(destination: "10.0.0.2")))
        #expect(and.matches(Self.request(destination: "10.0.1.2")))
        let or: RBACPrincipal = .or([
            .sourceIP(Self.range("1.2.3.4", 32)), .not(.directRemoteIP(Self.range("10.0.0.0", 8))),
        ])
        #expect(!or.matches(Self.request(source: "10.0.0.1")))
        #expect(or.matches(Self.request(source: "1.2.3.4")))
        #expect(or.matches(Self.request(source: "11.0.0.1")))
    }

    // MARK: authenticated (Envoy's AuthenticatedMatcher, checked on Envoy 1.40)

    @Test func plaintextIsNeverAuthenticated() {
        #expect(!Self.authenticated(nil, nil))
        #expect(!Self.authenticated(Self.exact(""), nil))
    }

    @Test func anyTLSConnectionMatchesAuthenticatedWithoutAName() {
        #expect(Self.authenticated(nil, ConnectionSecurity()))
        #expect(Self.authenticated(nil, Self.spiffeClient))
    }

    @Test func everyURISANIsTriedNotOnlyTheFirst() {
        #expect(Self.authenticated(Self.exact("spiffe://cluster.local/ns/default/sa/first"), Self.spiffeClient))
        #expect(Self.authenticated(Self.exact("spiffe://cluster.local/ns/default/sa/second"), Self.spiffeClient))
        #expect(!Self.authenticated(Self.exact("spiffe://cluster.local/ns/default/sa/third"), Self.spiffeClient))
        #expect(Self.authenticated(Self.prefix("spiffe://cluster.local/ns/default/"), Self.spiffeClient))
        #expect(!Self.authenticated(Self.prefix("spiffe://other.domain/"), Self.spiffeClient))
    }

    @Test func dnsSANsAndThenTheSubjectAreTriedEvenWhenURISANsExist() {
        #expect(Self.authenticated(Self.exact("client.example"), Self.spiffeClient))
        #expect(Self.authenticated(Self.exact("CN=client-one,O=acme"), Self.spiffeClient))
        #expect(!Self.authenticated(Self.exact("O=acme,CN=client-one"), Self.spiffeClient))
    }

    @Test func withoutAClientCertificateTheSubjectIsEmpty() {
        let noCertificate = ConnectionSecurity(peerCertificatePresented: false, requestedServerName: "web.example")
        #expect(Self.authenticated(Self.exact(""), noCertificate))
        #expect(!Self.authenticated(Self.exact("spiffe://cluster.local/ns/default/sa/first"), noCertificate))
        #expect(!Self.authenticated(Self.exact(""), Self.spiffeClient))
    }

    @Test func spiffeAllowListDeniesOtherWorkloads() {
        let frontendID = "spiffe://cluster.local/ns/default/sa/frontend"
        let r = Self.rules(.ALLOW, [.any], [.authenticated(Self.exact(frontendID))])
        var frontend = ConnectionSecurity(peerCertificatePresented: true)
        frontend.peerURISANs = [frontendID]
        var batch = frontend
        batch.peerURISANs = ["spiffe://cluster.local/ns/jobs/sa/batch"]
        #expect(r.allows(Self.request(security: frontend)))
        #expect(!r.allows(Self.request(security: batch)))
        #expect(!r.allows(Self.request(security: nil)))
    }

    // MARK: Addresses

    @Test func rangesMatchTheirOwnFamilyOnly() {
        let all4 = Self.range("0.0.0.0", 0)
        #expect(all4.contains(IPAddress(parsing: "203.0.113.9")))
        #expect(!all4.contains(IPAddress(parsing: "2001:db8::1")))
        #expect(!all4.contains(nil))
        let v6 = Self.range("2001:db8::", 32)
        #expect(v6.contains(IPAddress(parsing: "2001:db8:ffff::1")))
        #expect(!v6.contains(IPAddress(parsing: "2001:db9::1")))
        let deep = Self.range("2001:db8::1:0", 112)
        #expect(deep.contains(IPAddress(parsing: "2001:db8::1:abcd")))
        #expect(!deep.contains(IPAddress(parsing: "2001:db8::2:abcd")))
        #expect(Self.range("2001:db8::1", 200).prefixLength == 128)
        #expect(Self.range("10.1.2.3", 40) == Self.range("10.1.2.3", 32))
    }

    @Test func anIPv4MappedPeerIsItsIPv4AddressButMappedTextIsNot() throws {
        let mappedPeer = IPAddress(try SocketAddress(ipAddress: "::ffff:127.0.0.1", port: 1))
        #expect(mappedPeer == IPAddress(parsing: "127.0.0.1"))
        #expect(!Self.range("::ffff:127.0.0.1", 128).contains(mappedPeer))
        #expect(IPAddress(parsing: "::ffff:127.0.0.1") != IPAddress(parsing: "127.0.0.1"))
    }

    @Test func remoteIPFollowsXForwardedForButSourceAndDirectRemoteDoNot() {
        var r = Self.request(source: "127.0.0.1", path: "/", headers: [("x-forwarded-for", "10.1.2.3")])
        r.remote = ConnectionManagerHeaders().remoteAddress(r.http!.headers, peer: r.source)
        #expect(RBACPrincipal.remoteIP(Self.range("10.0.0.0", 8)).matches(r))
        #expect(!RBACPrincipal.sourceIP(Self.range("10.0.0.0", 8)).matches(r))
        #expect(!RBACPrincipal.directRemoteIP(Self.range("10.0.0.0", 8)).matches(r))
        #expect(RBACPrincipal.directRemoteIP(Self.range("127.0.0.1", 32)).matches(r))
        #expect(Self.rules(.DENY, [.any], [.remoteIP(Self.range("10.0.0.0", 8))]).usesRemoteIP)
        #expect(!Self.rules(.DENY, [.any], [.sourceIP(Self.range("10.0.0.0", 8))]).usesRemoteIP)
    }

    /// Envoy's `getLastAddressFromXFF` with no trusted hops.
    @Test(arguments: [
        (["10.1.2.3"], "10.1.2.3"),
        (["10.1.2.3, 192.168.0.1"], "192.168.0.1"),
        (["10.1.2.3", " 2001:db8::7 "], "2001:db8::7"),
        (["10.1.2.3,"], nil),
        (["garbage"], nil),
        (["10.1.2.3:80"], nil),
    ] as [([String], String?)])
    func theLastForwardedForAddressIsTheRemoteAddress(values: [String], expected: String?) {
        var headers = HTTPHeaders()
        for v in values { headers.add(name: "x-forwarded-for", value: v) }
        #expect(ConnectionManagerHeaders().remoteAddress(headers, peer: nil) == expected.flatMap { IPAddress(parsing: $0) })
    }

    @Test func destinationPortsAndRanges() {
        #expect(RBACPermission.destinationPortRange(8000..<9000).matches(Self.request(port: 8999)))
        #expect(!RBACPermission.destinationPortRange(8000..<9000).matches(Self.request(port: 9000)))
        #expect(RBACPermission.destinationIP(Self.range("10.0.0.2", 32)).matches(Self.request(destination: "10.0.0.2")))
    }

    @Test func requestedServerNameIsEmptyWithoutOne() {
        #expect(RBACPermission.requestedServerName(Self.exact("")).matches(Self.request(sni: nil)))
        #expect(RBACPermission.requestedServerName(Self.exact("api.example")).matches(Self.request(sni: "api.example")))
        // The handshake's own SNI does not count: Envoy reads the one tls_inspector found.
        let tls = ConnectionSecurity(requestedServerName: "api.example")
        #expect(!RBACPermission.requestedServerName(Self.exact("api.example")).matches(Self.request(security: tls)))
    }

    // MARK: HTTP view

    static func header(_ name: String, _ value: String? = nil, _ request: RBACRequest) -> Bool {
        let rule: HeaderMatcher.Rule = value.map { .string(exact($0)) } ?? .present(true)
        return request.matchesHeader(HeaderMatcher(name: name, rule: rule, invert: false, treatMissingAsEmpty: false))
    }

    @Test func pseudoHeadersAndHostAreTheRequestLine() {
        let r = Self.request(method: "POST", path: "/a?b=1", authority: "web.example:8080")
        #expect(Self.header(":method", "POST", r))
        #expect(Self.header(":path", "/a?b=1", r))
        #expect(Self.header(":authority", "web.example:8080", r))
        #expect(Self.header("host", "web.example:8080", r))
        #expect(Self.header(":scheme", "http", r))
        #expect(Self.header("x-forwarded-proto", "http", r))
    }

    @Test func headersTheConnectionManagerConsumesAreNotSeen() {
        let r = Self.request(path: "/", headers: [
            ("connection", "keep-alive, x-hop"), ("x-hop", "1"), ("keep-alive", "5"), ("transfer-encoding", "chunked"),
            ("te", "trailers, deflate"), ("expect", "100-continue"), ("x-envoy-retry-on", "5xx"),
            ("x-envoy-upstream-rq-timeout-ms", "10"), ("x-envoy-custom", "kept"), ("x-forwarded-proto", "https"),
            ("x-multi", "a"), ("X-Multi", "b"),
        ])
        for hidden in ["connection", "x-hop", "keep-alive", "transfer-encoding", "expect", "x-envoy-retry-on",
                       "x-envoy-upstream-rq-timeout-ms"] {
            #expect(!Self.header(hidden, nil, r), "\(hidden)")
        }
        #expect(Self.header("te", "trailers", r))
        #expect(Self.header("x-envoy-custom", "kept", r))
        #expect(Self.header("x-forwarded-proto", "https", r))
        #expect(Self.header(":scheme", "https", r))
        #expect(Self.header("x-multi", "a,b", r))
    }

    @Test func urlPathIgnoresQueryAndFragment() {
        let m: RBACPermission = .urlPath(Self.exact("/public/a"))
        #expect(m.matches(Self.request(path: "/public/a?x=1")))
        #expect(m.matches(Self.request(path: "/public/a#top")))
        #expect(m.matches(Self.request(path: "/public/a")))
        #expect(!m.matches(Self.request(path: "/x/../public/a")))
    }

    @Test func httpRulesNeverMatchAConnection() {
        let connection = Self.request()
        #expect(!RBACPermission.urlPath(Self.prefix("/")).matches(connection))
        #expect(RBACPermission.not(.urlPath(Self.prefix("/"))).matches(connection))
        #expect(!RBACPrincipal.header(HeaderMatcher(name: ":method", rule: .present(true), invert: false,
                                                   treatMissingAsEmpty: false)).matches(connection))
    }

    // MARK: Filters and counters

    @Test func shadowRulesAreCountedButNeverEnforced() {
        let registry = StatsRegistry()
        let stats = RBACStats(.network(statPrefix: "net", shadowRulesStatPrefix: ""), registry: registry)
        let counters = WorkerStats(registry: registry)
        var config = RBACFilterConfig()
        config.shadowRules = RBACRules(action: .ALLOW, policies: [])
        let shadowOnly = RBACFilter(config, stats: stats)
        #expect(shadowOnly.allows(Self.request(), counting: counters))
        #expect(counters.values[stats.shadowDenied] == 1)
        #expect(counters.values[stats.allowed] == 0 && counters.values[stats.denied] == 0)
        config.rules = RBACRules(action: .DENY, policies: [])
        let both = RBACFilter(config, stats: stats)
        #expect(both.allows(Self.request(), counting: counters))
        #expect(counters.values[stats.allowed] == 1)
        #expect(counters.values[stats.shadowDenied] == 2)
    }

    @Test func theFirstDenialEndsTheChainUncountedForLaterFilters() {
        let registry = StatsRegistry()
        let first = RBACStats(.network(statPrefix: "first", shadowRulesStatPrefix: ""), registry: registry)
        let second = RBACStats(.network(statPrefix: "second", shadowRulesStatPrefix: ""), registry: registry)
        let counters = WorkerStats(registry: registry)
        var deny = RBACFilterConfig()
        deny.rules = RBACRules(action: .ALLOW, policies: [])
        var allow = RBACFilterConfig()
        allow.rules = RBACRules(action: .DENY, policies: [])
        let chain = [RBACFilter(deny, stats: first), RBACFilter(allow, stats: second)]
        #expect(!RBACFilter.allow(chain, Self.request(), counting: counters))
        #expect(counters.values[first.denied] == 1)
        #expect(counters.values[second.allowed] == 0)
        #expect(RBACFilter.allow(Array(chain.reversed().prefix(1)), Self.request(), counting: counters))
        #expect(counters.values[second.allowed] == 1)
    }
}

/// Stat names and their Prometheus form, as Envoy 1.40's `/stats` and `/stats/prometheus` show them.
@Suite struct RBACStatsTests {
    func names(_ scope: RBACStats.Scope) -> [String: (String, [String])] {
        let r = StatsRegistry()
        _ = RBACStats(scope, registry: r)
        var out: [String: (String, [String])] = [:]
        for i in 0..<r.count {
            out[r.names[i]] = (r.snapshot.family(i).family, r.snapshot.family(i).labels.map { "\($0.0)=\($0.1)" })
        }
        return out
    }

    @Test func networkFilterNames() {
        let n = names(.network(statPrefix: "tcp_rbac", shadowRulesStatPrefix: ""))
        #expect(Set(n.keys) == ["tcp_rbac.rbac.allowed", "tcp_rbac.rbac.denied", "tcp_rbac.rbac.shadow_allowed",
                                "tcp_rbac.rbac.shadow_denied"])
        #expect(n["tcp_rbac.rbac.allowed"]! == ("rbac.allowed", ["envoy_rbac_prefix=tcp_rbac"]))
        let dotted = names(.network(statPrefix: "net.", shadowRulesStatPrefix: ""))
        #expect(dotted["net.rbac.denied"]! == ("rbac.denied", ["envoy_rbac_prefix=net"]))
        let deep = names(.network(statPrefix: "a.b", shadowRulesStatPrefix: "dry_"))
        #expect(Set(deep.keys) == ["a.b.rbac.allowed", "a.b.rbac.denied", "a.b.rbac.dry_.shadow_allowed",
                                   "a.b.rbac.dry_.shadow_denied"])
        #expect(deep["a.b.rbac.dry_.shadow_denied"]! == ("a.b.rbac.dry_.shadow_denied", []))
    }

    @Test func httpFilterNames() {
        let n = names(.http(connectionManagerPrefix: "ingress_http", rulesStatPrefix: "", shadowRulesStatPrefix: ""))
        #expect(Set(n.keys) == ["http.ingress_http.rbac.allowed", "http.ingress_http.rbac.denied",
                                "http.ingress_http.rbac.shadow_allowed", "http.ingress_http.rbac.shadow_denied"])
        #expect(n["http.ingress_http.rbac.denied"]!
            == ("http.rbac.denied", ["envoy_http_conn_manager_prefix=ingress_http"]))
        let prefixed = names(.http(connectionManagerPrefix: "probe", rulesStatPrefix: "a.b",
                                   shadowRulesStatPrefix: "istio_dry_run_allow_"))
        #expect(prefixed["http.probe.rbac.a.b.allowed"]!
            == ("http.rbac.b.allowed", ["envoy_rbac_http_prefix=a", "envoy_http_conn_manager_prefix=probe"]))
        #expect(prefixed["http.probe.rbac.istio_dry_run_allow_.shadow_allowed"]! == (
            "http.rbac.shadow_allowed",
            ["envoy_rbac_http_prefix=istio_dry_run_allow_", "envoy_http_conn_manager_prefix=probe"]))
        let dotted = names(
            .http(connectionManagerPrefix: "probe", rulesStatPrefix: "enf", shadowRulesStatPrefix: "shd."))
        #expect(dotted["http.probe.rbac.enf.allowed"] != nil)
        #expect(dotted["http.probe.rbac.shd.shadow_denied"] != nil)
    }

    @Test func filtersWithTheSameNamesShareCounters() {
        let r = StatsRegistry()
        let a = RBACStats(
            .http(connectionManagerPrefix: "p", rulesStatPrefix: "x", shadowRulesStatPrefix: ""), registry: r)
        let b = RBACStats(
            .http(connectionManagerPrefix: "p", rulesStatPrefix: "x.", shadowRulesStatPrefix: ""), registry: r)
        #expect(a.allowed == b.allowed)
        #expect(a.shadowDenied == b.shadowDenied)
        #expect(r.count == 4)
    }
}
