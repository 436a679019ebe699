import Testing

@testable import SidecarCore

/// Priorities, localities, endpoint health status and health-check ports in a cluster's load assignment, and the
/// config errors around them (named with their path, as every config error).
@Suite struct LocalityConfigTests {
    /// A bootstrap with one listener and one cluster whose `load_assignment.endpoints` and `common_lb_config` are given.
    static func config(endpoints: String, lb: String = "{}", policy: String = "ROUND_ROBIN") -> String {
        """
        static_resources:
          listeners:
          - name: l
            address: {socket_address: {address: 127.0.0.1, port_value: 9}}
            filter_chains:
            - filters:
              - name: envoy.filters.network.tcp_proxy
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                  stat_prefix: t
                  cluster: backend
          clusters:
          - name: backend
            type: STATIC
            lb_policy: \(policy)
            common_lb_config: \(lb)
            load_assignment:
              cluster_name: backend
              endpoints:
        \(endpoints.split(separator: "\n").map { "      " + $0 }.joined(separator: "\n"))
        """
    }

    static let example = """
        - locality: {region: local, zone: zone-1}
          load_balancing_weight: 1
          priority: 0
          lb_endpoints:
          - endpoint:
              address: {socket_address: {address: 198.18.0.1, port_value: 8080}}
              health_check_config: {port_value: 8081}
              hostname: backend-local-1
        - locality: {region: remote, zone: zone-2, sub_zone: rack-9}
          load_balancing_weight: 3
          priority: 2
          lb_endpoints:
          - endpoint: {address: {socket_address: {address: 198.18.0.2, port_value: 8080}}}
            health_status: DRAINING
          - endpoint: {address: {socket_address: {address: 198.18.0.3, port_value: 8080}}}
            health_status: HEALTHY
            load_balancing_weight: 7
        """

    @Test func decodesPrioritiesLocalitiesAndHealth() throws {
        let b = try Bootstrap.load(text: Self.config(endpoints: Self.example, lb: "{locality_weighted_lb_config: {}}"))
        let c = try #require(b.clusters.first)
        #expect(c.loadBalancing.localityWeighted)
        #expect(c.endpoints.count == 3)
        let first = c.endpoints[0]
        #expect(first.group == Cluster.EndpointGroup(priority: 0, index: 0, locality: .init(region: "local", zone: "zone-1"),
                                                     localityWeight: 1))
        #expect(first.healthCheckPort == 8081)
        #expect(first.healthStatus == .UNKNOWN)
        #expect(first.hostname == "backend-local-1")
        #expect(c.endpoints[1].group == Cluster.EndpointGroup(
            priority: 2, index: 1, locality: .init(region: "remote", zone: "zone-2", subZone: "rack-9"), localityWeight: 3))
        #expect(c.endpoints[1].healthStatus == .DRAINING)
        #expect(!c.endpoints[1].healthStatus.isHealthy)
        #expect(c.endpoints[2].healthStatus == .HEALTHY)
        #expect(c.endpoints[2].weight == 7)
        #expect(c.endpoints[2].healthCheckPort == nil)
    }

    @Test func refusesWhatItCannotHonour() {
        func error(_ endpoints: String, lb: String = "{}", policy: String = "ROUND_ROBIN") -> ConfigError? {
            #expect(throws: ConfigError.self) {
                try Bootstrap.load(text: Self.config(endpoints: endpoints, lb: lb, policy: policy))
            }
        }
        let path = "static_resources.clusters[0].load_assignment.endpoints"
        let one = "- lb_endpoints: [{endpoint: {address: {socket_address: {address: 198.18.0.1, port_value: 1}}}"
        let degraded = error(one + ", health_status: DEGRADED}]")
        #expect(degraded?.path == path + "[0].lb_endpoints[0].health_status")
        #expect(degraded?.message.contains("DEGRADED") == true)
        let unknown = error(one + ", health_status: SICK}]")
        #expect(unknown?.message.contains("unknown value 'SICK'") == true)
        let deep = error("- priority: 129\n" + one.replacingOccurrences(of: "- lb_", with: "  lb_") + "}]")
        #expect(deep?.path == path + "[0].priority")
        let twice = error("""
            - {locality: {zone: a}, lb_endpoints: [{endpoint: {address: {socket_address: {address: 198.18.0.1, port_value: 1}}}}]}
            - {locality: {zone: a}, lb_endpoints: [{endpoint: {address: {socket_address: {address: 198.18.0.2, port_value: 1}}}}]}
            """)
        #expect(twice?.path == path + "[1].locality")
        #expect(twice?.message.contains("appears twice at priority 0") == true)
        let heavy = error("""
            - {locality: {zone: a}, load_balancing_weight: 4294967295, lb_endpoints: []}
            - {locality: {zone: b}, load_balancing_weight: 1, lb_endpoints: []}
            """)
        #expect(heavy?.message == "the sum of weights of all localities at the same priority exceeds 4294967295")
        let zeroWeight = error("- {load_balancing_weight: 0, lb_endpoints: []}")
        #expect(zeroWeight?.path == path + "[0].load_balancing_weight")
        let hashing = error(one + "}]", lb: "{locality_weighted_lb_config: {}}", policy: "RING_HASH")
        #expect(hashing?.path == "static_resources.clusters[0].common_lb_config.locality_weighted_lb_config")
        let hcAddress = error(one.replacingOccurrences(of: "port_value: 1}}", with: "port_value: 1}}, health_check_config: {hostname: x}") + "}]")
        #expect(hcAddress?.path == path + "[0].lb_endpoints[0].endpoint.health_check_config.hostname")
        #expect(hcAddress?.message.contains("not supported by Pilotfish") == true)
    }
}
