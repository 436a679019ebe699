import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// Loading `envoy.filters.network.rbac` and `envoy.filters.http.rbac`: what Envoy 1.40 accepts loads, every
/// rejection names the field.
@Suite struct RBACConfigTests {
    static let networkType = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
    static let httpType = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"

    /// A listener whose chain has `networkFilters` (YAML list items, indented for `filters:`) before an HCM
    /// with `httpFilters` before the router.
    static func hcm(networkFilters: String = "", httpFilters: String = "") -> String {
        """
        static_resources:
          listeners:
          - name: ingress
            address: {socket_address: {address: 127.0.0.1, port_value: 10000}}
            filter_chains:
            - filters:
        \(networkFilters)
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                  stat_prefix: ingress_http
                  route_config: {virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, direct_response: {status: 200}}]}]}
                  http_filters:
        \(httpFilters)
                  - name: envoy.filters.http.router
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
        """
    }

    /// A network RBAC filter entry with `body` as extra typed_config lines (flow style, one per line).
    static func network(_ body: [String], name: String = "envoy.filters.network.rbac") -> String {
        """
              - name: \(name)
                typed_config:
                  "@type": \(networkType)
        """ + body.map { "\n          \($0)" }.joined()
    }

    static func http(_ body: [String]) -> String {
        """
                  - name: envoy.filters.http.rbac
                    typed_config:
                      "@type": \(httpType)
        """ + body.map { "\n              \($0)" }.joined()
    }

    static func tcp(networkFilters: String, terminalLast: Bool = true) -> String {
        let proxy = """
              - name: envoy.filters.network.tcp_proxy
                typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c}
        """
        return """
        static_resources:
          listeners:
          - name: tcp
            address: {socket_address: {address: 127.0.0.1, port_value: 10001}}
            filter_chains:
            - filters:
        \(terminalLast ? networkFilters + "\n" + proxy : proxy + "\n" + networkFilters)
          clusters:
          - {name: c, type: STATIC, load_assignment: {cluster_name: c, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}}
        """
    }

    static let chainPath = "static_resources.listeners[0].filter_chains[0].filters"
    static let httpRBACPath = chainPath + "[0].typed_config.http_filters[0].typed_config"

    func error(_ text: String) -> ConfigError? {
        do {
            _ = try Bootstrap.load(text: text)
            return nil
        } catch let e as ConfigError {
            return e
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    func chain(_ text: String) throws -> FilterChain {
        try #require(try Bootstrap.load(text: text).listeners.first?.filterChains.first)
    }

    func hcmConfig(_ text: String) throws -> HTTPConnectionManagerConfig {
        guard case .httpConnectionManager(let h) = try chain(text).network else {
            Issue.record("not an HCM")
            throw ConfigError(path: "", line: nil, message: "not an HCM")
        }
        return h
    }

    // MARK: Accepted

    @Test func networkRBACFiltersBeforeTheTerminalFilterLoadInOrder() throws {
        let text = Self.tcp(networkFilters: Self.network(["stat_prefix: first", "rules: {action: DENY}"]) + "\n"
            + Self.network(["stat_prefix: second", "shadow_rules: {}", "shadow_rules_stat_prefix: dry_",
                            "enforcement_type: ONE_TIME_ON_FIRST_BYTE"]))
        let c = try chain(text)
        #expect(c.networkRBAC.map(\.statPrefix) == ["first", "second"])
        #expect(c.networkRBAC[0].rules?.action == .DENY)
        #expect(c.networkRBAC[1].rules == nil)
        #expect(c.networkRBAC[1].shadowRules?.action == .ALLOW)
        #expect(c.networkRBAC[1].shadowRulesStatPrefix == "dry_")
        guard case .tcpProxy = c.network else {
            Issue.record("terminal filter lost")
            return
        }
    }

    @Test func httpRBACFiltersBeforeTheRouterLoad() throws {
        let rules = """
            rules:
                action: ALLOW
                policies:
                  get-public:
                    permissions:
                    - and_rules: {rules: [{header: {name: ":method", string_match: {exact: GET}}}, {url_path: {path: {prefix: /public}}}]}
                    - or_rules: {rules: [{destination_port: 80}, {destination_port_range: {start: 8000, end: 9000}}]}
                    - not_rule: {destination_ip: {address_prefix: 10.0.0.0, prefix_len: 8}}
                    - requested_server_name: {suffix: .example.com}
                    principals:
                    - authenticated: {principal_name: {exact: "spiffe://cluster.local/ns/default/sa/web"}}
                    - authenticated: {}
                    - and_ids: {ids: [{source_ip: {address_prefix: 127.0.0.1}}, {direct_remote_ip: {address_prefix: "::1", prefix_len: 128}}]}
                    - or_ids: {ids: [{remote_ip: {address_prefix: 192.168.0.0, prefix_len: 16}}, {header: {name: x-user, present_match: true}}]}
                    - not_id: {url_path: {path: {exact: /admin}}}
                    - any: true
            """
        let h = try hcmConfig(Self.hcm(httpFilters: Self.http(rules.split(separator: "\n").map(String.init)
            + ["rules_stat_prefix: enf", "shadow_rules: {action: DENY}", "track_per_rule_stats: false"])))
        #expect(h.httpFilters.map(\.name) == ["envoy.filters.http.rbac", "envoy.filters.http.router"])
        #expect(h.httpRBAC.count == 1)
        let rbac = try #require(h.httpRBAC.first)
        #expect(rbac.rulesStatPrefix == "enf")
        #expect(rbac.rules?.policies.map(\.name) == ["get-public"])
        #expect(rbac.rules?.policies.first?.permissions.count == 4)
        #expect(rbac.rules?.policies.first?.principals.count == 6)
        #expect(rbac.shadowRules?.action == .DENY)
    }

    @Test func urlPathIsAcceptedByTheNetworkFilterAsInEnvoy() throws {
        // Envoy 1.40 refuses only header rules in the network filter; url_path loads and never matches.
        let text = Self.tcp(networkFilters: Self.network([
            "stat_prefix: s",
            "rules: {policies: {p: {permissions: [{url_path: {path: {prefix: /a}}}], principals: [{any: true}]}}}",
        ]))
        #expect(try chain(text).networkRBAC.count == 1)
    }

    // MARK: Rejected, naming the field

    @Test func networkRBACAfterTheTerminalFilterIsRefused() throws {
        let e = try #require(error(Self.tcp(networkFilters: Self.network(["stat_prefix: s"]), terminalLast: false)))
        #expect(e.path == Self.chainPath + "[0]")
        #expect(e.message.contains("terminal filter"))
        #expect(e.message.contains("must be the last filter"))
    }

    @Test func aChainEndingInRBACIsRefused() throws {
        let text = """
            static_resources:
              listeners:
              - name: tcp
                address: {socket_address: {address: 127.0.0.1, port_value: 10001}}
                filter_chains:
                - filters:
                  - name: envoy.filters.network.rbac
                    typed_config: {"@type": \(Self.networkType), stat_prefix: s}
            """
        let e = try #require(error(text))
        #expect(e.path == Self.chainPath + "[0]")
        #expect(e.message.contains("non-terminal filter"))
    }

    @Test func networkHeaderRulesAreRefusedWhereverTheyAre() throws {
        let permission = Self.tcp(networkFilters: Self.network([
            "stat_prefix: s",
            "rules: {policies: {p: {permissions: [{and_rules: {rules: [{any: true}, {header: {name: x}}]}}],"
                + " principals: [{any: true}]}}}",
        ]))
        let e1 = try #require(error(permission))
        let rulesPath = Self.chainPath + "[0].typed_config.rules.policies.p"
        #expect(e1.path == rulesPath + ".permissions[0].and_rules.rules[1].header")
        #expect(e1.message.contains("not supported by the RBAC network filter"))
        let principal = Self.tcp(networkFilters: Self.network([
            "stat_prefix: s",
            "shadow_rules: {policies: {p: {permissions: [{any: true}], principals: [{not_id: {header: {name: x}}}]}}}",
        ]))
        let e2 = try #require(error(principal))
        #expect(e2.path == Self.chainPath + "[0].typed_config.shadow_rules.policies.p.principals[0].not_id.header")
    }

    @Test func networkStatPrefixIsRequired() throws {
        let e = try #require(error(Self.tcp(networkFilters: Self.network(["rules: {}"]))))
        #expect(e.path == Self.chainPath + "[0].typed_config")
        #expect(e.message.contains("stat_prefix"))
        let empty = try #require(error(Self.tcp(networkFilters: Self.network(["stat_prefix: \"\""]))))
        #expect(empty.path == Self.chainPath + "[0].typed_config.stat_prefix")
    }

    /// Valid Envoy fields Pilotfish does not implement, each named in its error.
    @Test(arguments: [
        ("enforcement_type: CONTINUOUS", "enforcement_type"),
        ("delay_deny: 1s", "delay_deny"),
        // The matcher form's LOG action (RBACMatcherTests has the rest of the matcher form).
        ("matcher: {on_no_match: {action: {name: a, typed_config: {\"@type\": type.googleapis.com/envoy.config.rbac.v3.Action, name: p, action: LOG}}}}",
         "matcher.on_no_match.action.typed_config.action"),
        ("rules: {action: LOG}", "rules.action"),
        ("rules: {audit_logging_options: {}}", "rules.audit_logging_options"),
        ("rules: {policies: {p: {permissions: [{any: true}], principals: [{any: true}], condition: {}}}}",
         "rules.policies.p.condition"),
        ("rules: {policies: {p: {permissions: [{metadata: {}}], principals: [{any: true}]}}}",
         "rules.policies.p.permissions[0].metadata"),
        ("rules: {policies: {p: {permissions: [{any: true}], principals: [{filter_state: {}}]}}}",
         "rules.policies.p.principals[0].filter_state"),
        ("rules: {policies: {p: {permissions: [{uri_template: {}}], principals: [{any: true}]}}}",
         "rules.policies.p.permissions[0].uri_template"),
        ("rules: {policies: {p: {permissions: [{any: true}], principals: [{custom: {}}]}}}",
         "rules.policies.p.principals[0].custom"),
    ])
    func unsupportedNetworkFieldsAreNamed(line: String, field: String) throws {
        let e = try #require(error(Self.tcp(networkFilters: Self.network(["stat_prefix: s", line]))))
        #expect(e.path == Self.chainPath + "[0].typed_config." + field)
    }

    @Test(arguments: [
        ("shadow_matcher: {on_no_match: {action: {name: a, typed_config: {\"@type\": type.googleapis.com/envoy.config.rbac.v3.Action, name: p, action: LOG}}}}",
         "shadow_matcher.on_no_match.action.typed_config.action"),
        ("track_per_rule_stats: true", "track_per_rule_stats"),
        ("rules: {policies: {p: {permissions: [{any: true}], principals: [{sourced_metadata: {}}]}}}",
         "rules.policies.p.principals[0].sourced_metadata"),
        // Envoy 1.40's HTTP filter has no stat_prefix.
        ("stat_prefix: x", "stat_prefix"),
    ])
    func unsupportedOrUnknownHTTPFieldsAreNamed(line: String, field: String) throws {
        let e = try #require(error(Self.hcm(httpFilters: Self.http([line]))))
        #expect(e.path == Self.httpRBACPath + "." + field)
    }

    /// Envoy 1.40 has none of these in the network filter: unknown fields.
    @Test(arguments: ["rules_stat_prefix: x", "track_per_rule_stats: true", "enforce_on_transport_ready: true"])
    func httpOnlyAndNewerFieldsAreUnknownInTheNetworkFilter(line: String) throws {
        let e = try #require(error(Self.tcp(networkFilters: Self.network(["stat_prefix: s", line]))))
        #expect(e.message.hasPrefix("unknown field"))
    }

    /// Envoy's proto validation, field by field.
    @Test(arguments: [
        ("{permissions: [{any: false}], principals: [{any: true}]}", "permissions[0].any", "must be true"),
        ("{permissions: [], principals: [{any: true}]}", "permissions", "at least one permission"),
        ("{permissions: [{any: true}]}", "", "at least one principal"),
        ("{permissions: [{and_rules: {rules: []}}], principals: [{any: true}]}", "permissions[0].and_rules.rules",
         "at least one"),
        ("{permissions: [{destination_port: 70000}], principals: [{any: true}]}", "permissions[0].destination_port",
         "out of range"),
        ("{permissions: [{destination_port_range: {start: 80, end: 80}}], principals: [{any: true}]}",
         "permissions[0].destination_port_range", "cannot be greater or equal"),
        ("{permissions: [{destination_port_range: {start: 80, end: 70000}}], principals: [{any: true}]}",
         "permissions[0].destination_port_range", "range end 70000 is out of bounds"),
        ("{permissions: [{not_rule: {}}], principals: [{any: true}]}", "permissions[0].not_rule", "one of"),
        ("{permissions: [{url_path: {}}], principals: [{any: true}]}", "permissions[0].url_path", "path"),
        ("{permissions: [{any: true, destination_port: 1}], principals: [{any: true}]}",
         "permissions[0].destination_port", "only one of"),
        ("{permissions: [{any: true}], principals: [{source_ip: {address_prefix: 10.0.0.0/8}}]}",
         "principals[0].source_ip", "malformed IP address"),
        ("{permissions: [{any: true}], principals: [{authenticated: {principal_name: {prefix: \"\"}}}]}",
         "principals[0].authenticated.principal_name.prefix", "must not be empty"),
        ("{permissions: [{header: {name: \"\"}}], principals: [{any: true}]}", "permissions[0].header.name",
         "must not be empty"),
    ])
    func invalidPoliciesAreRefusedAsEnvoyDoes(policy: String, field: String, message: String) throws {
        let e = try #require(error(Self.hcm(httpFilters: Self.http(["rules: {policies: {p: \(policy)}}"]))))
        let base = Self.httpRBACPath + ".rules.policies.p"
        #expect(e.path == (field.isEmpty ? base : base + "." + field))
        #expect(e.message.contains(message), "\(e.message)")
    }

    @Test func anHTTPRBACFilterAfterTheRouterIsRefused() throws {
        let text = Self.hcm().replacingOccurrences(
            of: "      typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}",
            with: "      typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}\n"
                + Self.http(["rules: {}"]))
        let e = try #require(error(text))
        #expect(e.message.contains("router filter must be the last"))
    }

    @Test func aNetworkFilterNamedForAnotherTypeIsRefused() throws {
        let e = try #require(error(Self.tcp(networkFilters: Self.network(
            ["stat_prefix: s"], name: "envoy.filters.network.tcp_proxy"))))
        #expect(e.path == Self.chainPath + "[0]")
        #expect(e.message.contains("does not match its typed_config"))
    }

    @Test func cidrWithoutPrefixLengthIsTheWholeFamilyAndLongOnesAreClamped() throws {
        let h = try hcmConfig(Self.hcm(httpFilters: Self.http([
            "rules: {policies: {p: {permissions: [{destination_ip: {address_prefix: 10.1.2.3, prefix_len: 40}}],"
                + " principals: [{source_ip: {address_prefix: 10.1.2.3}}]}}}",
        ])))
        let policy = try #require(h.httpRBAC.first?.rules?.policies.first)
        guard case .destinationIP(let long) = policy.permissions[0], case .sourceIP(let none) = policy.principals[0]
        else {
            Issue.record("unexpected rules")
            return
        }
        #expect(long.prefixLength == 32)
        #expect(none.prefixLength == 0)
    }
}
