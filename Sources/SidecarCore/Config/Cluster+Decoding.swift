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

    /// A `ClusterLoadAssignment`: the cluster's endpoints, inline or from EDS, each with the priority, locality and
    /// health status of its entry.
    package static func decodeLoadAssignment(_ value: ConfigValue, requireIP: Bool) throws -> ClusterLoadAssignment {
        let obj = try value.object()
        try obj.unsupported(["policy", "named_endpoints"])
        let clusterName = try obj.optional("cluster_name")?.string() ?? ""
        var out: [Endpoint] = []
        // Envoy's checks when it builds the priority set (ClusterImplBase::validateEndpoints): the locality weights
        // of a priority, and the endpoint weights of a locality, each sum to at most UInt32.max.
        var localityWeightSums: [UInt32: UInt64] = [:]
        var seenLocalities: [UInt32: Set<Locality>] = [:]
        for (index, group) in try obj.list("endpoints").enumerated() {
            let g = try group.object()
            try g.unsupported(["metadata", "proximity", "leds_cluster_locality_config"])
            let locality = try g.optional("locality").map(Self.decodeLocality) ?? Locality()
            let weightValue = g.optional("load_balancing_weight")
            let localityWeight = try weightValue?.int(min: 1, max: Int64(UInt32.max)) ?? 0
            let priorityValue = g.optional("priority")
            let priority = UInt32(try priorityValue?.int(min: 0, max: 128) ?? 0)  // endpoint_components.proto: lte 128
            if !seenLocalities[priority, default: []].insert(locality).inserted {
                // Envoy folds such entries into one locality; which weight wins is not obvious, so we ask for one entry.
                throw (g.optional("locality") ?? group).error(
                    "locality \(locality.text) appears twice at priority \(priority); give it one entry of endpoints")
            }
            localityWeightSums[priority, default: 0] += UInt64(localityWeight)
            if localityWeightSums[priority]! > UInt64(UInt32.max) {
                throw (weightValue ?? group).error(
                    "the sum of weights of all localities at the same priority exceeds \(UInt32.max)")
            }
            let endpointGroup = EndpointGroup(priority: priority, index: index, locality: locality,
                                              localityWeight: UInt32(localityWeight))
            var hostWeightSum: UInt64 = 0
            for item in try g.list("lb_endpoints") {
                let e = try item.object()
                try e.unsupported(["metadata", "endpoint_name"])
                let weightValue = e.optional("load_balancing_weight")
                let weight = try weightValue?.int(min: 1, max: Int64(UInt32.max)) ?? 1
                hostWeightSum += UInt64(weight)
                if hostWeightSum > UInt64(UInt32.max) {
                    throw (weightValue ?? item).error(
                        "the sum of weights of all upstream hosts in a locality exceeds \(UInt32.max)")
                }
                var health = EndpointHealthStatus.UNKNOWN
                if let status = e.optional("health_status") {
                    if (try? status.string()) == "DEGRADED" {
                        throw status.error("health_status DEGRADED is a valid Envoy value but is not supported by "
                            + "Pilotfish yet (it has no degraded tier of hosts)")
                    }
                    health = try status.enumValue(EndpointHealthStatus.self)
                }
                let ep = try e.required("endpoint").object()
                try ep.unsupported(["additional_addresses"])
                var healthCheckPort: Int?
                if let hc = ep.optional("health_check_config") {
                    let hco = try hc.object()
                    try hco.unsupported(["hostname", "address", "disable_active_health_check"])
                    if let port = hco.optional("port_value") {
                        let p = try port.int(min: 0, max: 65535)
                        healthCheckPort = p == 0 ? nil : Int(p)  // 0: the endpoint's own port, as in Envoy
                    }
                    try hco.finish()
                }
                let hostname = try ep.optional("hostname")?.headerValueText()  // auto_host_rewrite sends it as `host`
                let addr = try ep.required("address").object()
                try addr.unsupported(["pipe", "envoy_internal_address"])
                let sa = try SocketAddressConfig.decodeSocketAddress(try addr.required("socket_address"), requireIP: requireIP)
                try addr.finish()
                try ep.finish()
                try e.finish()
                out.append(Endpoint(address: sa, weight: UInt32(weight), hostname: hostname, group: endpointGroup,
                                    healthStatus: health, healthCheckPort: healthCheckPort))
            }
            try g.finish()
        }
        try obj.finish()
        // Kept for the cluster's life (and per EDS update): without the growth slack.
        return ClusterLoadAssignment(clusterName: clusterName, endpoints: Array(unsafeUninitializedCapacity: out.count) {
            buffer, count in
            for (i, e) in out.enumerated() { (buffer.baseAddress! + i).initialize(to: e) }
            count = out.count
        })
    }

    /// `envoy.config.core.v3.Locality`.
    private static func decodeLocality(_ value: ConfigValue) throws -> Locality {
        let obj = try value.object()
        let locality = Locality(region: try obj.optional("region")?.string() ?? "",
                                zone: try obj.optional("zone")?.string() ?? "",
                                subZone: try obj.optional("sub_zone")?.string() ?? "")
        try obj.finish()
        return locality
    }
}
