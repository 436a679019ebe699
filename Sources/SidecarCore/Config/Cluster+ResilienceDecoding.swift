/// Decoding of a cluster's upstream-resilience settings: load balancing, outlier detection, circuit breakers
/// and the upstream HTTP connection limits (health checks are in `HealthCheckConfig+Decoding.swift`).
///
/// Validation follows Envoy 1.40's `.proto` rules (`cluster.proto`, `outlier_detection.proto`,
/// `circuit_breaker.proto`, `core/v3/protocol.proto`, `upstreams/http/v3/http_protocol_options.proto`) and the
/// checks Envoy makes when it builds the cluster. Where Envoy would accept a setting and then ignore it, we
/// reject it instead, so that nothing in a config is silently without effect; each such place says so.

extension LoadBalancingConfig {
    /// Reads the policy's `*_lb_config` and `common_lb_config` from the cluster; `policy` is the decoded
    /// `lb_policy`.
    package static func decode(_ cluster: ConfigObject, policy: Cluster.LBPolicy) throws -> LoadBalancingConfig {
        var lb = LoadBalancingConfig()
        lb.policy = policy
        let keys = ["ring_hash_lb_config", "maglev_lb_config", "least_request_lb_config", "round_robin_lb_config"]
        if let (key, value) = try cluster.oneOf(keys, required: false) {
            let fits: Cluster.LBPolicy
            switch key {
            case "ring_hash_lb_config": fits = .RING_HASH
            case "maglev_lb_config": fits = .MAGLEV
            case "least_request_lb_config": fits = .LEAST_REQUEST
            default: fits = .ROUND_ROBIN
            }
            // Envoy 1.40 accepts a *_lb_config of another policy and ignores it; a setting that does nothing
            // is a mistake we would rather report.
            guard fits == policy else {
                throw value.error(
                    "\(key) applies only to lb_policy \(fits.rawValue), but this cluster's lb_policy is "
                        + "\(policy.rawValue) (Envoy would ignore it)")
            }
            switch fits {
            case .RING_HASH: try lb.decodeRingHash(value)
            case .MAGLEV: try lb.decodeMaglev(value)
            case .LEAST_REQUEST: try lb.decodeLeastRequest(value)
            case .ROUND_ROBIN, .RANDOM, .CLUSTER_PROVIDED:
                let rr = try value.object()
                try rr.unsupported(["slow_start_config"])
                try rr.finish()
            }
        }
        if let common = cluster.optional("common_lb_config") {
            let obj = try common.object()
            try obj.unsupported([
                "zone_aware_lb_config", "update_merge_window",
                "ignore_new_hosts_until_first_hc", "close_connections_on_host_set_change",
                "consistent_hashing_lb_config", "override_host_status",
            ])
            if let panic = obj.optional("healthy_panic_threshold") {
                // Envoy converts the percent to a whole number by truncation (convertPercent into 0...100).
                lb.healthyPanicThreshold = try panic.percent().rounded(.towardZero)
            }
            if let weighted = obj.optional("locality_weighted_lb_config") {
                try weighted.object().finish()
                switch policy {
                case .ROUND_ROBIN, .LEAST_REQUEST, .RANDOM:
                    lb.localityWeighted = true
                case .RING_HASH, .MAGLEV, .CLUSTER_PROVIDED:
                    // Envoy folds locality weights into the hash table's host weights; Pilotfish does not yet.
                    throw weighted.error(
                        "locality_weighted_lb_config with lb_policy \(policy.rawValue) is not supported by Pilotfish "
                            + "yet (it is with ROUND_ROBIN, LEAST_REQUEST and RANDOM)")
                }
            }
            try obj.finish()
        }
        return lb
    }

    private mutating func decodeLeastRequest(_ value: ConfigValue) throws {
        let obj = try value.object()
        try obj.unsupported(["slow_start_config"])
        if let count = obj.optional("choice_count") {
            choiceCount = try count.uint32Int(min: 2)
        }
        if let biasValue = obj.optional("active_request_bias") {
            // A RuntimeDouble. Pilotfish has no runtime layer, so the default value applies, as in Envoy when
            // the runtime has no value for the key.
            let bias = try biasValue.object()
            let defaultValue = bias.optional("default_value")
            let b = try defaultValue?.double() ?? 0
            // Envoy logs a warning and falls back to 1.0 for a negative bias; we refuse it instead.
            if !b.isFinite || b < 0 {
                throw (defaultValue ?? biasValue).error("active_request_bias must be a number >= 0.0, found \(b)")
            }
            _ = try bias.optional("runtime_key")?.string()
            try bias.finish()
            activeRequestBias = b
        }
        try obj.finish()
    }

    /// Ring sizes are at most 8M entries (`cluster.proto`), and the minimum may not exceed the maximum
    /// (Envoy's RingHashLoadBalancer).
    private mutating func decodeRingHash(_ value: ConfigValue) throws {
        let obj = try value.object()
        let limit: Int64 = 8 * 1024 * 1024
        if let minimum = obj.optional("minimum_ring_size") {
            minimumRingSize = Int(try minimum.int(min: 0, max: limit))
        }
        if let maximum = obj.optional("maximum_ring_size") {
            maximumRingSize = Int(try maximum.int(min: 0, max: limit))
        }
        if let function = obj.optional("hash_function") {
            switch try function.string() {
            case "XX_HASH":
                break
            case "MURMUR_HASH_2":
                throw function.error(
                    "hash_function MURMUR_HASH_2 is a valid Envoy value but is not supported by Pilotfish yet")
            case let other:
                throw function.error("unknown value '\(other)'; expected one of: XX_HASH, MURMUR_HASH_2")
            }
        }
        if minimumRingSize > maximumRingSize {
            throw value.error(
                "ring hash: minimum_ring_size (\(minimumRingSize)) > maximum_ring_size (\(maximumRingSize))")
        }
        try obj.finish()
    }

    /// The Maglev table size is a prime of at most 5000011 (`cluster.proto` and Envoy's MaglevLoadBalancer).
    private mutating func decodeMaglev(_ value: ConfigValue) throws {
        let obj = try value.object()
        if let size = obj.optional("table_size") {
            let n = Int(try size.int(min: 0, max: 5_000_011))
            guard Self.isPrime(n) else {
                throw size.error("the table size of maglev must be a prime number, found \(n)")
            }
            maglevTableSize = n
        }
        try obj.finish()
    }

    package static func isPrime(_ n: Int) -> Bool {
        if n < 2 { return false }
        if n < 4 { return true }
        if n % 2 == 0 { return false }
        var d = 3
        while d * d <= n {
            if n % d == 0 { return false }
            d += 2
        }
        return true
    }
}

extension OutlierDetectionConfig {
    package static func decode(_ value: ConfigValue) throws -> OutlierDetectionConfig {
        let obj = try value.object()
        try obj.unsupported(["monitors", "detect_degraded_hosts"])
        let counts: [(String, WritableKeyPath<OutlierDetectionConfig, Int>)] = [
            ("consecutive_5xx", \.consecutive5xx),
            ("consecutive_gateway_failure", \.consecutiveGatewayFailure),
            ("consecutive_local_origin_failure", \.consecutiveLocalOriginFailure),
            ("success_rate_minimum_hosts", \.successRateMinimumHosts),
            ("success_rate_request_volume", \.successRateRequestVolume),
            ("success_rate_stdev_factor", \.successRateStdevFactor),
            ("failure_percentage_minimum_hosts", \.failurePercentageMinimumHosts),
            ("failure_percentage_request_volume", \.failurePercentageRequestVolume),
        ]
        // The UInt32Value fields `outlier_detection.proto` bounds with `lte: 100`.
        let percents: [(String, WritableKeyPath<OutlierDetectionConfig, Int>)] = [
            ("max_ejection_percent", \.maxEjectionPercent),
            ("enforcing_consecutive_5xx", \.enforcingConsecutive5xx),
            ("enforcing_consecutive_gateway_failure", \.enforcingConsecutiveGatewayFailure),
            ("enforcing_consecutive_local_origin_failure", \.enforcingConsecutiveLocalOriginFailure),
            ("enforcing_success_rate", \.enforcingSuccessRate),
            ("enforcing_local_origin_success_rate", \.enforcingLocalOriginSuccessRate),
            ("failure_percentage_threshold", \.failurePercentageThreshold),
            ("enforcing_failure_percentage", \.enforcingFailurePercentage),
            ("enforcing_failure_percentage_local_origin", \.enforcingFailurePercentageLocalOrigin),
        ]
        let flags: [(String, WritableKeyPath<OutlierDetectionConfig, Bool>)] = [
            ("split_external_local_origin_errors", \.splitExternalLocalOriginErrors),
            ("successful_active_health_check_uneject_host", \.successfulActiveHealthCheckUnejectHost),
            ("always_eject_one_host", \.alwaysEjectOneHost),
        ]
        var config = OutlierDetectionConfig()
        for (key, path) in counts {
            if let v = obj.optional(key) { config[keyPath: path] = try v.uint32Int() }
        }
        for (key, path) in percents {
            if let v = obj.optional(key) { config[keyPath: path] = try v.uint32Int(max: 100) }
        }
        for (key, path) in flags {
            if let v = obj.optional(key) { config[keyPath: path] = try v.bool() }
        }
        if let v = obj.optional("interval") { config.interval = try v.positiveDuration() }
        if let v = obj.optional("base_ejection_time") { config.baseEjectionTime = try v.positiveDuration() }
        if let v = obj.optional("max_ejection_time_jitter") { config.maxEjectionTimeJitter = try v.duration() }
        // Envoy's DetectorConfig: unset, the cap is 300s or the base time, whichever is larger; set, it may
        // not be below the base time.
        if let v = obj.optional("max_ejection_time") {
            let cap = try v.positiveDuration()
            if cap < config.baseEjectionTime {
                throw v.error(
                    "outlier detection's max_ejection_time (\(cap)) cannot be smaller than "
                        + "base_ejection_time (\(config.baseEjectionTime))")
            }
            config.maxEjectionTime = cap
        } else {
            config.maxEjectionTime = max(.seconds(300), config.baseEjectionTime)
        }
        try obj.finish()
        return config
    }
}

extension CircuitBreakerThresholds {
    /// `circuit_breakers`: one thresholds entry per priority, DEFAULT then HIGH, Envoy's defaults where a
    /// priority has none.
    package static func decodeCircuitBreakers(_ value: ConfigValue) throws -> [CircuitBreakerThresholds] {
        let obj = try value.object()
        try obj.unsupported(["per_host_thresholds"])
        var byPriority: [Priority: CircuitBreakerThresholds] = [:]
        for item in try obj.list("thresholds") {
            let thresholds = try decode(item)
            // Envoy 1.40 uses the first entry of a priority and silently ignores the others.
            if byPriority[thresholds.priority] != nil {
                throw (item.child("priority") ?? item).error(
                    "duplicate thresholds for priority \(thresholds.priority.rawValue); Envoy would ignore all "
                        + "but the first")
            }
            byPriority[thresholds.priority] = thresholds
        }
        try obj.finish()
        return Priority.allCases.map { byPriority[$0] ?? CircuitBreakerThresholds(priority: $0) }
    }

    private static func decode(_ value: ConfigValue) throws -> CircuitBreakerThresholds {
        let obj = try value.object()
        try obj.unsupported(["max_connection_pools"])
        var t = CircuitBreakerThresholds(priority: try obj.optional("priority")?.enumValue(Priority.self) ?? .DEFAULT)
        if let v = obj.optional("max_connections") { t.maxConnections = try v.uint32Int() }
        if let v = obj.optional("max_pending_requests") { t.maxPendingRequests = try v.uint32Int() }
        if let v = obj.optional("max_requests") { t.maxRequests = try v.uint32Int() }
        if let v = obj.optional("max_retries") { t.maxRetries = try v.uint32Int() }
        if let v = obj.optional("retry_budget") {
            let budget = try v.object()
            try budget.unsupported(["budget_interval"])
            var b = RetryBudget()
            if let p = budget.optional("budget_percent") { b.budgetPercent = try p.percent() }
            if let m = budget.optional("min_retry_concurrency") { b.minRetryConcurrency = try m.uint32Int() }
            try budget.finish()
            t.retryBudget = b
        }
        t.trackRemaining = try obj.optional("track_remaining")?.bool() ?? false
        try obj.finish()
        return t
    }
}

extension UpstreamHTTPProtocolOptions {
    package static let typedOptionsName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    package static let typedOptionsType = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

    /// From the cluster's `typed_extension_protocol_options` HttpProtocolOptions, else its deprecated
    /// `common_http_protocol_options`, plus the deprecated cluster-level `max_requests_per_connection`.
    package static func decode(_ cluster: ConfigObject) throws -> UpstreamHTTPProtocolOptions {
        let legacy = cluster.optional("common_http_protocol_options")
        var typed: (options: ConfigValue, common: ConfigValue?, protocol: UpstreamProtocol, http2: HTTP2ProtocolOptions?)?
        if let extensions = cluster.optional("typed_extension_protocol_options") {
            for (name, value) in try extensions.map() {
                guard name == typedOptionsName else {
                    throw value.error(
                        "typed_extension_protocol_options '\(name)' is not supported by Pilotfish yet; "
                            + "only \(typedOptionsName) is")
                }
                let decoded = try decodeTypedOptions(value)
                typed = (value, decoded.common, decoded.protocol, decoded.http2)
            }
        }
        // Envoy uses the typed options and silently ignores the deprecated cluster field when both are set.
        if let legacy, let typed {
            throw legacy.error(
                "common_http_protocol_options cannot be combined with typed_extension_protocol_options "
                    + "'\(typedOptionsName)' (at \(typed.options.path)); Envoy would ignore it, so move these settings "
                    + "into the typed options' common_http_protocol_options")
        }
        var options = UpstreamHTTPProtocolOptions()
        options.upstreamProtocol = typed?.protocol ?? .http1
        options.http2Options = typed?.http2 ?? nil
        var common: ConfigObject?
        if let value = typed?.common ?? legacy {
            let obj = try value.object()
            try options.apply(obj)
            common = obj
        }
        if let v = cluster.optional("max_requests_per_connection") {
            if let common, common.has("max_requests_per_connection") {
                throw v.error(
                    "only one of max_requests_per_connection from the cluster or from its "
                        + "HttpProtocolOptions (\(common.childPath("max_requests_per_connection"))) can be specified")
            }
            let n = try v.uint32Int()
            options.maxRequestsPerConnection = n == 0 ? nil : n
        }
        return options
    }

    /// Checks an HttpProtocolOptions `Any` and returns its `common_http_protocol_options`, if any, and the protocol
    /// it chose (`explicit_http_config`, `use_downstream_protocol_config` or `auto_config`).
    private static func decodeTypedOptions(_ value: ConfigValue) throws
        -> (common: ConfigValue?, protocol: UpstreamProtocol, http2: HTTP2ProtocolOptions?) {
        let obj = try value.object()
        let type = try obj.required("@type")
        if try type.string() != typedOptionsType {
            throw type.error("expected \(typedOptionsType) for \(typedOptionsName)")
        }
        try obj.unsupported([
            "upstream_http_protocol_options", "http_filters", "header_validation_config", "outlier_detection",
            "request_mirror_policies", "hash_policy", "retry_policy",
        ])
        let protocols = ["explicit_http_config", "use_downstream_protocol_config", "auto_config"]
        guard let (key, chosen) = try obj.oneOf(protocols) else { fatalError("unreachable: oneOf is required") }
        if key == "use_downstream_protocol_config" || key == "auto_config" {
            // Both protocols, chosen per request (the downstream's) or per connection (by ALPN; the cluster needs
            // TLS: see Cluster.decode).
            let both = try chosen.object()
            try both.unsupported(key == "auto_config" ? ["http3_protocol_options", "alternate_protocols_cache_options"]
                                                      : ["http3_protocol_options"])
            if let http1 = both.optional("http_protocol_options") { try checkHTTP1Options(try http1.object()) }
            let h2 = try both.optional("http2_protocol_options").map { try HTTP2ProtocolOptions.decode($0, upstream: true) }
            try both.finish()
            let common = obj.optional("common_http_protocol_options")
            try obj.finish()
            return (common, key == "auto_config" ? .auto : .downstream, h2 ?? HTTP2ProtocolOptions())
        }
        let explicit = try chosen.object()
        try explicit.unsupported(["http3_protocol_options"])
        if let h2 = try explicit.oneOf(["http_protocol_options", "http2_protocol_options"])?.value,
           h2.path.hasSuffix("http2_protocol_options") {
            let options = try HTTP2ProtocolOptions.decode(h2, upstream: true)
            try explicit.finish()
            let common = obj.optional("common_http_protocol_options")
            try obj.finish()
            return (common, .http2, options)
        }
        try checkHTTP1Options(try explicit.required("http_protocol_options").object())
        try explicit.finish()
        let common = obj.optional("common_http_protocol_options")
        try obj.finish()
        return (common, .http1, nil)
    }

    /// Every Http1ProtocolOptions field changes the upstream codec, which is fixed in Pilotfish.
    private static func checkHTTP1Options(_ http1: ConfigObject) throws {
        try http1.unsupported([
            "allow_absolute_url", "accept_http_10", "default_host_for_http_10", "header_key_format", "enable_trailers",
            "allow_chunked_length", "override_stream_error_on_invalid_http_message", "send_fully_qualified_url",
            "use_balsa_parser", "allow_custom_methods", "ignore_http_11_upgrade",
        ])
        try http1.finish()
    }

    /// `envoy.config.core.v3.HttpProtocolOptions`: the connection-lifetime limits Pilotfish's pools enforce.
    private mutating func apply(_ obj: ConfigObject) throws {
        try obj.unsupported([
            "max_connection_duration_jitter", "max_headers_count", "max_response_headers_kb", "max_stream_duration",
            "headers_with_underscores_action",
        ])
        // Zero disables the idle timeout; zero or unset means no duration or request-count limit.
        if let v = obj.optional("idle_timeout") { idleTimeout = try v.duration() }
        if let v = obj.optional("max_connection_duration") {
            let d = try v.duration()
            maxConnectionDuration = d.isZero ? nil : d
        }
        if let v = obj.optional("max_requests_per_connection") {
            let n = try v.uint32Int()
            maxRequestsPerConnection = n == 0 ? nil : n
        }
        try obj.finish()
    }
}
