import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// Every rejection names the field path and the (1-based) line, so a user never has to guess.
@Suite struct ConfigDecodingTests {
    static let hcmPath = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
    static let routePath = hcmPath + ".route_config.virtual_hosts[0].routes[0]"

    /// A small, valid bootstrap; tests derive broken variants from it by replacing one line.
    static let valid = """
        static_resources:
          listeners:
          - name: ingress
            address:
              socket_address: { address: 127.0.0.1, port_value: 10000 }
            filter_chains:
            - filters:
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                  stat_prefix: ingress_http
                  http_filters:
                  - name: envoy.filters.http.router
                  route_config:
                    virtual_hosts:
                    - name: backend
                      domains: ["*"]
                      routes:
                      - match: { prefix: "/" }
                        route: { cluster: service, timeout: 0.25s }
          clusters:
          - name: service
            connect_timeout: { seconds: 1, nanos: 500000000 }
            type: STATIC
            load_assignment:
              cluster_name: service
              endpoints:
              - lb_endpoints:
                - endpoint:
                    address:
                      socket_address: { address: 127.0.0.1, port_value: 8080 }
        """

    /// `valid` with the first occurrence of `old` replaced by `new`.
    static func variant(_ old: String, _ new: String) -> String {
        guard let range = valid.range(of: old) else { fatalError("'\(old)' is not in the base config") }
        return valid.replacingCharacters(in: range, with: new)
    }

    /// The 1-based line of the first line containing `needle`.
    static func line(of needle: String, in text: String) -> Int {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let i = lines.firstIndex(where: { $0.contains(needle) }) else { fatalError("'\(needle)' not found") }
        return i + 1
    }

    static func loadError(_ text: String) -> ConfigError? {
        do {
            _ = try Bootstrap.load(text: text)
            return nil
        } catch let e as ConfigError {
            return e
        } catch {
            Issue.record("expected a ConfigError, got \(error)")
            return nil
        }
    }

    // MARK: Valid configs

    @Test func validBootstrapLoads() throws {
        let b = try Bootstrap.load(text: Self.valid)
        #expect(b.listeners.count == 1)
        #expect(b.listeners[0].address == SocketAddressConfig(address: "127.0.0.1", port: 10000))
        #expect(b.clusters.map(\.name) == ["service"])
        #expect(b.clusters[0].endpoints.map(\.address.port) == [8080])
    }

    @Test func routerFilterWithoutTypedConfigIsAccepted() throws {
        // Envoy 1.40 rejects this; Pilotfish accepts it because the intent is unambiguous.
        let b = try Bootstrap.load(text: Self.valid)
        #expect(b.listeners[0].connectionManager?.httpFilters.map(\.name) == ["envoy.filters.http.router"])
    }

    @Test func routerFilterWithTypedConfigIsAccepted() throws {
        let text = Self.variant(
            "  - name: envoy.filters.http.router\n",
            """
              - name: envoy.filters.http.router
                        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }

            """)
        let b = try Bootstrap.load(text: text)
        #expect(b.listeners[0].connectionManager?.httpFilters.map(\.name) == ["envoy.filters.http.router"])
    }

    @Test func durationsInBothForms() throws {
        let b = try Bootstrap.load(text: Self.valid)
        #expect(b.clusters[0].connectTimeout == .milliseconds(1500))
        guard case .forward(let f)? = b.listeners[0].connectionManager?.routeConfig.virtualHosts[0].routes[0].action
        else {
            Issue.record("expected a forwarding route")
            return
        }
        #expect(f.timeout == .milliseconds(250))
    }

    @Test(arguments: [
        ("0.25s", Int64(250_000_000)), ("15s", 15_000_000_000), ("0s", 0), ("1.000340012s", 1_000_340_012),
        ("0.000000001s", 1),
    ])
    func durationStrings(text: String, nanoseconds: Int64) {
        #expect(ProtoDuration(parsing: text)?.nanoseconds == nanoseconds)
    }

    @Test(arguments: [
        "10ms", "1.5", "-1s", "s", ".5s", "1.s", "1.0000000001s", "1 s", "one s", "1.\u{0661}s", "\u{0661}s",
    ])
    func durationStringsEnvoyRejects(text: String) {
        #expect(ProtoDuration(parsing: text) == nil)
    }

    @Test func jsonConfigLoads() throws {
        let json = """
            {
              "static_resources": {
                "listeners": [{
                  "name": "ingress",
                  "address": { "socket_address": { "address": "127.0.0.1", "port_value": 10000 } },
                  "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                      "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                      "statPrefix": "ingress_http",
                      "httpFilters": [{ "name": "envoy.filters.http.router" }],
                      "routeConfig": { "virtualHosts": [{ "name": "backend", "domains": ["*"],
                        "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "service", "timeout": "2.5s" } }] }] }
                    }
                  }] }]
                }],
                "clusters": [{
                  "name": "service",
                  "connect_timeout": "0.25s",
                  "load_assignment": { "cluster_name": "service", "endpoints": [{ "lb_endpoints": [
                    { "endpoint": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": "8080" } } } }
                  ] }] }
                }]
              }
            }
            """
        let b = try Bootstrap.load(text: json)
        #expect(b.listeners[0].connectionManager?.statPrefix == "ingress_http")
        #expect(b.clusters[0].connectTimeout == .milliseconds(250))
        #expect(b.clusters[0].endpoints[0].address.port == 8080)
        guard case .forward(let f)? = b.listeners[0].connectionManager?.routeConfig.virtualHosts[0].routes[0].action
        else {
            Issue.record("expected a forwarding route")
            return
        }
        #expect(f.timeout == .milliseconds(2500))
    }

    @Test func jsonIndentedWithTabsLoads() throws {
        let json =
            "{\n\t\"static_resources\": {\n\t\t\"clusters\": [\n\t\t\t{ \"name\": \"a\", \"connect_timeout\": \"1s\" }\n\t\t]\n\t}\n}\n"
        let b = try Bootstrap.load(text: json)
        #expect(b.clusters.map(\.name) == ["a"])
    }

    @Test func jsonErrorsNameTheLine() {
        let json = """
            {
              "static_resources": {
                "clusters": [
                  { "name": "a", "connect_timeout": "1s", "colour": "blue" }
                ]
              }
            }
            """
        let e = Self.loadError(json)
        #expect(e?.path == "static_resources.clusters[0].colour")
        #expect(e?.line == 4)
    }

    @Test func routeMetadataIsKeptWithYAMLTypes() throws {
        let config = try RouteConfiguration.load(
            text: """
                virtual_hosts:
                - name: vh
                  domains: ["*"]
                  routes:
                  - match: { prefix: / }
                    route: { cluster: c }
                    metadata:
                      filter_metadata:
                        databricks.der: { route_id: canary, weight: 5, enabled: true, quoted: "true", tags: [a, b], none: null }
                """)
        let m = config.virtualHosts[0].routes[0].metadata
        #expect(m.value(namespace: "databricks.der", key: "route_id") == .string("canary"))
        #expect(m.value(namespace: "databricks.der", key: "weight") == .number(5))
        #expect(m.value(namespace: "databricks.der", key: "enabled") == .bool(true))
        #expect(m.value(namespace: "databricks.der", key: "quoted") == .string("true"))
        #expect(m.value(namespace: "databricks.der", key: "tags") == .list([.string("a"), .string("b")]))
        #expect(m.value(namespace: "databricks.der", key: "none") == .null)
    }

    @Test func typedFilterMetadataIsNotSupportedYet() {
        let error = #expect(throws: ConfigError.self) {
            try RouteConfiguration.load(
                text: """
                    virtual_hosts:
                    - name: vh
                      domains: ["*"]
                      metadata:
                        typed_filter_metadata: {}
                    """)
        }
        #expect(error?.path == "virtual_hosts[0].metadata.typed_filter_metadata")
        #expect(error?.line == 5)
        #expect(error?.message.contains("not supported by Pilotfish yet") == true)
    }

    @Test func grpcRouteMatchOptionsHaveNoFields() {
        let error = #expect(throws: ConfigError.self) {
            try RouteConfiguration.load(
                text: """
                    virtual_hosts:
                    - name: vh
                      domains: ["*"]
                      routes:
                      - match: { prefix: /, grpc: { web: true } }
                        route: { cluster: c }
                    """)
        }
        #expect(error?.path == "virtual_hosts[0].routes[0].match.grpc.web")
        #expect(error?.line == 5)
    }

    // MARK: Rejections

    @Test func unknownField() {
        let text = Self.variant("    type: STATIC\n", "    type: STATIC\n    colour: blue\n")
        let e = Self.loadError(text)
        #expect(e?.path == "static_resources.clusters[0].colour")
        #expect(e?.line == 25)
        #expect(e?.line == Self.line(of: "colour: blue", in: text))
        #expect(e?.message.contains("unknown field 'colour'") == true)
    }

    @Test func validEnvoyFieldThatIsNotSupportedYet() {
        let text = Self.variant(
            "domains: [\"*\"]\n",
            "domains: [\"*\"]\n              hedge_policy: { hedge_on_per_try_timeout: true }\n")
        let e = Self.loadError(text)
        #expect(e?.path == Self.hcmPath + ".route_config.virtual_hosts[0].hedge_policy")
        #expect(e?.line == Self.line(of: "hedge_policy:", in: text))
        #expect(e?.message.contains("not supported by Pilotfish yet") == true)
    }

    @Test func unsupportedClusterFieldNamesItsPath() {
        let text = Self.variant(
            "    type: STATIC\n", "    type: STATIC\n    lb_subset_config: { fallback_policy: ANY_ENDPOINT }\n")
        let e = Self.loadError(text)
        #expect(e?.path == "static_resources.clusters[0].lb_subset_config")
        #expect(e?.line == Self.line(of: "lb_subset_config", in: text))
        #expect(e?.message.contains("not supported by Pilotfish yet") == true)
    }

    @Test func wrongTypeInteger() {
        let text = Self.variant("port_value: 8080", "port_value: eighty")
        let e = Self.loadError(text)
        #expect(
            e?.path
                == "static_resources.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value"
        )
        #expect(e?.line == Self.line(of: "port_value: eighty", in: text))
        #expect(e?.message.contains("expected an integer") == true)
    }

    @Test func wrongTypeListWhereAMappingWasGiven() {
        let text = Self.variant("domains: [\"*\"]", "domains: { host: \"*\" }")
        let e = Self.loadError(text)
        #expect(e?.path == Self.hcmPath + ".route_config.virtual_hosts[0].domains")
        #expect(e?.line == 17)
        #expect(e?.message.contains("expected a list") == true)
    }

    @Test func routeToAMissingCluster() {
        let text = Self.variant("route: { cluster: service,", "route: { cluster: nowhere,")
        let e = Self.loadError(text)
        #expect(e?.path == Self.routePath + ".route.cluster")
        #expect(e?.line == 20)
        #expect(e?.message.contains("unknown cluster 'nowhere'") == true)
    }

    @Test func weightedClusterToAMissingCluster() {
        let text = Self.variant(
            "route: { cluster: service, timeout: 0.25s }",
            "route: { weighted_clusters: { clusters: [{ name: service, weight: 1 }, { name: ghost, weight: 1 }] } }")
        let e = Self.loadError(text)
        #expect(e?.path == Self.routePath + ".route.weighted_clusters.clusters[1].name")
        #expect(e?.line == 20)
    }

    @Test func badRegex() {
        let text = Self.variant("match: { prefix: \"/\" }", "match: { safe_regex: { regex: \"([a-z\" } }")
        let e = Self.loadError(text)
        #expect(e?.path == Self.routePath + ".match.safe_regex.regex")
        #expect(e?.line == 19)
        #expect(e?.message.contains("invalid regex") == true)
    }

    @Test(arguments: [#"(a)\1"#, #"[\1]"#, "(?=a)a", "(?!a)b", "(?<=a)b", "(?<!a)b", "(?>a)"])
    func regexThatRE2Rejects(pattern: String) {
        let text = Self.variant("match: { prefix: \"/\" }", "match: { safe_regex: { regex: '\(pattern)' } }")
        let e = Self.loadError(text)
        #expect(e?.path == Self.routePath + ".match.safe_regex.regex")
        #expect(e?.line == 19)
        #expect(e?.message.contains("is not RE2 syntax") == true)
    }

    @Test(arguments: [#"[(?=]"#, #"\Q(?=\E"#, "(?P<id>[0-9]+)", "(?i)abc", "(?:x)", #"\\1"#])
    func regexThatRE2Accepts(pattern: String) throws {
        #expect(CompiledRegex.nonRE2Construct(in: pattern) == nil)
        _ = try CompiledRegex(pattern)
    }

    @Test func twoVirtualHostsClaimingStar() {
        let text = Self.variant(
            "route: { cluster: service, timeout: 0.25s }\n",
            "route: { cluster: service, timeout: 0.25s }\n"
                + "            - name: second\n"
                + "              domains: [\"example.com\", \"*\"]\n"
                + "              routes: []\n")
        let e = Self.loadError(text)
        #expect(e?.path == Self.hcmPath + ".route_config.virtual_hosts[1].domains[1]")
        #expect(e?.line == 22)
        #expect(e?.message.contains("Only a single wildcard domain is permitted") == true)
    }

    @Test func duplicateDomainAcrossVirtualHosts() throws {
        let error = #expect(throws: ConfigError.self) {
            try RouteConfiguration.load(
                text: """
                    virtual_hosts:
                    - { name: a, domains: [api.example.com] }
                    - name: b
                      domains:
                      - API.example.com
                    """)
        }
        #expect(error?.path == "virtual_hosts[1].domains[0]")
        #expect(error?.line == 5)
    }

    @Test func badDuration() {
        let text = Self.variant("timeout: 0.25s", "timeout: 250ms")
        let e = Self.loadError(text)
        #expect(e?.path == Self.routePath + ".route.timeout")
        #expect(e?.line == 20)
        #expect(e?.message.contains("invalid duration '250ms'") == true)
    }

    @Test func badDurationNanos() {
        let text = Self.variant("nanos: 500000000", "nanos: 1500000000")
        let e = Self.loadError(text)
        #expect(e?.path == "static_resources.clusters[0].connect_timeout.nanos")
        #expect(e?.line == 23)
    }

    @Test func zeroConnectTimeoutNamesTheField() {
        let text = Self.variant("connect_timeout: { seconds: 1, nanos: 500000000 }", "connect_timeout: 0s")
        let e = Self.loadError(text)
        #expect(e?.path == "static_resources.clusters[0].connect_timeout")
        #expect(e?.line == 23)
    }

    @Test func badPort() {
        let text = Self.variant("port_value: 10000", "port_value: 70000")
        let e = Self.loadError(text)
        #expect(e?.path == "static_resources.listeners[0].address.socket_address.port_value")
        #expect(e?.line == 5)
        #expect(e?.message.contains("out of range") == true)
    }

    @Test func missingRequiredField() {
        // A known field in place of the name: an unknown one would be reported instead (ConfigErrorTests).
        let text = Self.variant("  - name: service\n", "  - dns_refresh_rate: 5s\n")
        let e = Self.loadError(text)
        #expect(e?.path == "static_resources.clusters[0]")
        #expect(e?.line == 22)
        #expect(e?.message == "missing required field 'name'")
    }

    @Test func duplicateClusterName() {
        let text = Self.valid + "\n  - name: service\n    connect_timeout: 1s\n"
        let e = Self.loadError(text)
        #expect(e?.path == "static_resources.clusters[1].name")
        #expect(e?.line == Self.line(of: "connect_timeout: 1s", in: text) - 1)
    }

    @Test func unparsableYAMLNamesTheLine() {
        let text = Self.variant("    type: STATIC\n", "    type: [STATIC\n")
        let e = Self.loadError(text)
        #expect(e?.path == "")
        #expect(e?.line != nil)
        #expect(e?.message.contains("cannot parse config") == true)
    }

    @Test func errorDescriptionShowsPathAndLine() {
        let e = ConfigError(path: "static_resources.clusters[0].colour", line: 24, message: "unknown field 'colour'")
        #expect(e.description == "static_resources.clusters[0].colour (line 24): unknown field 'colour'")
    }
}
