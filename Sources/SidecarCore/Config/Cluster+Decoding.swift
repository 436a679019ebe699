extension Cluster {
    package static func decode(_ value: ConfigValue) throws -> Cluster {
        let obj = try value.object()
        try obj.unsupported([
            "transport_socket_matches", "transport_socket_matcher", "http2_protocol_options",
            "http_protocol_options", "upstream_http_protocol_options", "protocol_selection", "lb_subset_config",
            "original_dst_lb_config", "load_balancing_policy", "cluster_type",
            "upstream_connection_options", "dns_resolvers", "dns_resolution_config", "typed_dns_resolver_config",
            "use_tcp_for_dns_lookups", "respect_dns_ttl", "dns_failure_refresh_rate", "dns_jitter", "track_timeout_budgets",
            "track_cluster_stats", "preconnect_policy", "close_connections_on_host_health_failure",
            "ignore_health_on_host_removal", "filters", "metadata", "alt_stat_name", "lrs_server",
            "lrs_report_endpoint_metrics", "connection_pool_per_downstream_connection", "wait_for_warm_on_init",
            "hosts", "upstream_config", "stats_matcher", "per_connection_buffer_high_watermark_timeout",
            "queuing_policies",
        ])
        let name = try obj.required("name").nonEmptyString()
        var type = DiscoveryType.STATIC
        if let t = obj.optional("type") {
            type = try t.enumValue(DiscoveryType.self)
        }
        let connectTimeoutValue = obj.optional("connect_timeout")
        let connectTimeout = try connectTimeoutValue?.duration() ?? .seconds(5)
        if let connectTimeoutValue, connectTimeout.isZero {
            throw connectTimeoutValue.error("connect_timeout must be greater than 0s")
        }
        var lb = LBPolicy.ROUND_ROBIN
        if let l = obj.optional("lb_policy") {
            let s = try l.string()
            if s == "LOAD_BALANCING_POLICY_CONFIG" {
                throw l.error("lb_policy \(s) is a valid Envoy value but is not supported by Pilotfish yet")
            }
            lb = try l.enumValue(LBPolicy.self)
        }
        let loadBalancing = try LoadBalancingConfig.decode(obj, policy: lb)
        let healthChecks = try obj.optional("health_checks").map(HealthCheckConfig.decodeList) ?? []
        let outlierDetection = try obj.optional("outlier_detection").map(OutlierDetectionConfig.decode)
        let circuitBreakers = try obj.optional("circuit_breakers").map(CircuitBreakerThresholds.decodeCircuitBreakers)
        let httpProtocolOptions = try UpstreamHTTPProtocolOptions.decode(obj)
        let refreshValue = obj.optional("dns_refresh_rate")
        let refresh = try refreshValue?.duration() ?? .seconds(5)
        if let refreshValue, refresh < .milliseconds(1) {
            throw refreshValue.error("dns_refresh_rate must be at least 1ms")
        }
        let family = try obj.optional("dns_lookup_family")?.enumValue(DNSLookupFamily.self) ?? .AUTO
        let limit = try obj.optional("per_connection_buffer_limit_bytes")?.uint32() ?? 1_048_576
        var endpoints: [Endpoint] = []
        let la = obj.optional("load_assignment")
        if let la {
            endpoints = try decodeLoadAssignment(la, requireIP: type == .STATIC || type == .EDS).endpoints
        }
        let edsValue = obj.optional("eds_cluster_config")
        let eds = try edsValue.map { v in
            let o = try v.object()
            let source = try ConfigSource.decode(try o.required("eds_config"))
            let serviceName = try o.optional("service_name")?.nonEmptyString() ?? name
            try o.finish()
            return EDSClusterConfig(serviceName: serviceName, source: source)
        }
        if type == .EDS {
            guard eds != nil else { throw obj.value.error("an EDS cluster needs eds_cluster_config") }
            if let la { throw la.error("an EDS cluster takes its endpoints from eds_cluster_config, not load_assignment") }
        } else if let edsValue {
            throw edsValue.error("eds_cluster_config is for clusters of type EDS")
        }
        // Envoy: an ORIGINAL_DST cluster must use CLUSTER_PROVIDED and have no endpoints, and only it may.
        if type == .ORIGINAL_DST && lb != .CLUSTER_PROVIDED {
            throw (obj.optional("lb_policy") ?? obj.value).error("an ORIGINAL_DST cluster needs lb_policy: CLUSTER_PROVIDED")
        }
        if type != .ORIGINAL_DST && lb == .CLUSTER_PROVIDED {
            throw (obj.optional("lb_policy") ?? obj.value).error("lb_policy CLUSTER_PROVIDED is only valid for a cluster of type ORIGINAL_DST")
        }
        if type == .ORIGINAL_DST && !endpoints.isEmpty {
            throw (la ?? obj.value).error("an ORIGINAL_DST cluster takes its hosts from connections; it cannot have load_assignment endpoints")
        }
        if type == .LOGICAL_DNS && endpoints.count != 1 {
            throw (la ?? obj.value).error("a LOGICAL_DNS cluster needs exactly one endpoint, found \(endpoints.count)")
        }
        var source: SocketAddressConfig?
        if let bind = try obj.optional("upstream_bind_config")?.object() {
            try bind.unsupported(["freebind", "socket_options", "extra_source_addresses", "additional_source_addresses", "local_address_selector"])
            source = try SocketAddressConfig.decodeSocketAddress(try bind.required("source_address"), requireIP: true)
            try bind.finish()
        }
        let cleanupValue = obj.optional("cleanup_interval")
        let cleanup = try cleanupValue?.duration() ?? .seconds(5)
        if let cleanupValue, cleanup < .milliseconds(1) {
            throw cleanupValue.error("cleanup_interval must be at least 1ms")
        }
        let tls = try obj.optional("transport_socket").flatMap { try TLSContextConfig.decodeTransportSocket($0, side: .upstream) }
        if tls == nil, httpProtocolOptions.upstreamProtocol == .auto {
            // Envoy's words: the protocol is chosen by ALPN, which a plaintext connection does not have.
            throw (obj.optional("typed_extension_protocol_options") ?? obj.value).error(
                "ALPN configured for cluster \(name) which has a non-ALPN transport socket: auto_config needs a TLS "
                    + "transport_socket (envoy.transport_sockets.tls)")
        }
        try obj.finish()
        var cluster = Cluster(name: name, type: type, connectTimeout: connectTimeout, lbPolicy: lb, endpoints: endpoints,
                              dnsRefreshRate: refresh, dnsLookupFamily: family, perConnectionBufferLimitBytes: Int(limit))
        cluster.upstreamSourceAddress = source
        cluster.eds = eds
        cluster.cleanupInterval = cleanup
        cluster.loadBalancing = loadBalancing
        cluster.healthChecks = healthChecks
        cluster.outlierDetection = outlierDetection
        if let circuitBreakers { cluster.circuitBreakers = circuitBreakers }
        cluster.httpProtocolOptions = httpProtocolOptions
        cluster.tls = tls
        return cluster
    }

    /// A `ClusterLoadAssignment`: the cluster's endpoints, inline or from EDS.
    package static func decodeLoadAssignment(_ value: ConfigValue, requireIP: Bool) throws -> ClusterLoadAssignment {
        let obj = try value.object()
        try obj.unsupported(["policy", "named_endpoints"])
        let clusterName = try obj.optional("cluster_name")?.string() ?? ""
        var out: [Endpoint] = []
        for group in try obj.list("endpoints") {
            let g = try group.object()
            try g.unsupported(["locality", "load_balancing_weight", "priority", "metadata", "proximity", "leds_cluster_locality_config"])
            for item in try g.list("lb_endpoints") {
                let e = try item.object()
                try e.unsupported(["health_status", "metadata", "endpoint_name"])
                let weight = try e.optional("load_balancing_weight")?.int(min: 1, max: Int64(UInt32.max)) ?? 1
                let ep = try e.required("endpoint").object()
                try ep.unsupported(["health_check_config", "additional_addresses"])
                let hostname = try ep.optional("hostname")?.headerValueText()  // auto_host_rewrite sends it as `host`
                let addr = try ep.required("address").object()
                try addr.unsupported(["pipe", "envoy_internal_address"])
                let sa = try SocketAddressConfig.decodeSocketAddress(try addr.required("socket_address"), requireIP: requireIP)
                try addr.finish()
                try ep.finish()
                try e.finish()
                out.append(Endpoint(address: sa, weight: UInt32(weight), hostname: hostname))
            }
            try g.finish()
        }
        try obj.finish()
        return ClusterLoadAssignment(clusterName: clusterName, endpoints: out)
    }
}
