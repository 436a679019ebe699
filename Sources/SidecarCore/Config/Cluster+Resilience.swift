/// The upstream-resilience parts of a cluster, in Envoy's terms and with Envoy's defaults. These are plain
/// config values; the mechanisms that act on them live under `Upstream/` and take them as they are.

/// `lb_policy` with its per-policy `*_lb_config` and `common_lb_config`.
public struct LoadBalancingConfig: Sendable, Equatable {
    public var policy: Cluster.LBPolicy = .ROUND_ROBIN
    /// `common_lb_config.healthy_panic_threshold` in percent (default 50). Below this share of healthy
    /// hosts the balancer ignores health and uses every host ("panic"). 0 disables panic mode.
    public var healthyPanicThreshold: Double = 50
    /// `least_request_lb_config.choice_count` (default 2, at least 2).
    public var choiceCount: Int = 2
    /// `least_request_lb_config.active_request_bias` (default 1.0): weighted hosts score
    /// `weight / (active + 1) ^ bias`.
    public var activeRequestBias: Double = 1.0
    /// `ring_hash_lb_config.minimum_ring_size` (default 1024) and `maximum_ring_size` (default 8M).
    public var minimumRingSize: Int = 1024
    public var maximumRingSize: Int = 8 * 1024 * 1024
    /// `maglev_lb_config.table_size` (default 65537, must be prime).
    public var maglevTableSize: Int = 65537
    /// `common_lb_config.locality_weighted_lb_config`: within a priority, a locality is picked first by its
    /// `load_balancing_weight` scaled by its health, then a host of it by the policy.
    public var localityWeighted = false

    public init() {}
}

/// One entry of `health_checks`.
public struct HealthCheckConfig: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case http(HTTP)
        case tcp(TCP)
    }

    /// `http_health_check`.
    public struct HTTP: Sendable, Equatable {
        /// `host`; empty means the cluster name (Envoy's default).
        public var host: String?
        public var path: String
        /// `expected_statuses` as half-open ranges; default `[200, 201)`.
        public var expectedStatuses: [Range<Int>] = [200..<201]
        public var method: String = "GET"
    }

    /// `tcp_health_check`: optional `send` payload, and `receive` blocks that must all appear (in order)
    /// in the response. Both empty: a connect-only check.
    public struct TCP: Sendable, Equatable {
        public var send: [UInt8]
        public var receive: [[UInt8]]
    }

    public var kind: Kind
    public var timeout: ProtoDuration
    public var interval: ProtoDuration
    /// `interval_jitter` (default 0) and `initial_jitter` (default 0).
    public var intervalJitter: ProtoDuration = .seconds(0)
    public var initialJitter: ProtoDuration = .seconds(0)
    public var unhealthyThreshold: Int
    public var healthyThreshold: Int
    /// `no_traffic_interval` (default 60s): used until the cluster has carried traffic.
    public var noTrafficInterval: ProtoDuration = .seconds(60)
    /// `no_traffic_healthy_interval` (default: `no_traffic_interval`): the same, after a passing check.
    public var noTrafficHealthyInterval: ProtoDuration?
    /// `unhealthy_interval` (default: `interval`), used while a host is unhealthy.
    public var unhealthyInterval: ProtoDuration?
    /// `reuse_connection` (default true).
    public var reuseConnection: Bool = true
}

/// `outlier_detection`, with Envoy's defaults.
public struct OutlierDetectionConfig: Sendable, Equatable {
    public var consecutive5xx: Int = 5
    public var consecutiveGatewayFailure: Int = 5
    public var consecutiveLocalOriginFailure: Int = 5
    public var interval: ProtoDuration = .seconds(10)
    public var baseEjectionTime: ProtoDuration = .seconds(30)
    public var maxEjectionTime: ProtoDuration = .seconds(300)
    public var maxEjectionTimeJitter: ProtoDuration = .seconds(0)
    /// Percent of hosts that may be ejected at once (default 10). Envoy 1.40 lets one host be ejected past
    /// this cap only with `alwaysEjectOneHost`: with the defaults, 3 hosts and 10 % eject none.
    public var maxEjectionPercent: Int = 10
    /// `always_eject_one_host` (default false): one host may always be ejected, whatever the percentage.
    public var alwaysEjectOneHost: Bool = false
    public var enforcingConsecutive5xx: Int = 100
    public var enforcingConsecutiveGatewayFailure: Int = 0
    public var enforcingConsecutiveLocalOriginFailure: Int = 100
    public var enforcingSuccessRate: Int = 100
    public var enforcingLocalOriginSuccessRate: Int = 100
    public var successRateMinimumHosts: Int = 5
    public var successRateRequestVolume: Int = 100
    /// Ejects hosts below `mean - (stdev_factor / 1000) * stdev`. Default 1900.
    public var successRateStdevFactor: Int = 1900
    public var failurePercentageThreshold: Int = 85
    public var enforcingFailurePercentage: Int = 0
    public var enforcingFailurePercentageLocalOrigin: Int = 0
    public var failurePercentageMinimumHosts: Int = 5
    public var failurePercentageRequestVolume: Int = 50
    /// Keep local-origin errors (connect failure, timeout, reset) apart from the upstream's own 5xx.
    public var splitExternalLocalOriginErrors: Bool = false
    /// An ejected host that passes an active health check is brought back at once (default true).
    public var successfulActiveHealthCheckUnejectHost: Bool = true

    public init() {}
}

/// `circuit_breakers.thresholds[]`: one priority's limits.
public struct CircuitBreakerThresholds: Sendable, Equatable {
    /// Envoy's defaults for every priority, DEFAULT first.
    public static let defaults = Priority.allCases.map { CircuitBreakerThresholds(priority: $0) }

    public enum Priority: String, Sendable, CaseIterable {
        case DEFAULT, HIGH
        public var statName: String { self == .DEFAULT ? "default" : "high" }
    }

    public struct RetryBudget: Sendable, Equatable {
        /// `budget_percent` (default 20 %) of active plus pending requests may be retries.
        public var budgetPercent: Double = 20
        /// `min_retry_concurrency` (default 3): retries always allowed up to this many.
        public var minRetryConcurrency: Int = 3
    }

    public var priority: Priority = .DEFAULT
    public var maxConnections: Int = 1024
    public var maxPendingRequests: Int = 1024
    public var maxRequests: Int = 1024
    public var maxRetries: Int = 3
    /// When set, replaces `max_retries`.
    public var retryBudget: RetryBudget?
    /// `track_remaining`: publish the `remaining_*` gauges.
    public var trackRemaining: Bool = false

    public init(priority: Priority = .DEFAULT) { self.priority = priority }
}

/// The timeouts of upstream connections: `common_http_protocol_options` (directly on the cluster, or in
/// `typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]`).
public struct UpstreamHTTPProtocolOptions: Sendable, Equatable {
    /// `idle_timeout` of a pooled connection (default 1h; zero disables).
    public var idleTimeout: ProtoDuration = .seconds(3600)
    /// `max_connection_duration` (default none): the connection is closed once its current request ends.
    public var maxConnectionDuration: ProtoDuration?
    /// `max_requests_per_connection` (default unlimited).
    public var maxRequestsPerConnection: Int?
    /// Which HTTP version the cluster's connections speak.
    public enum UpstreamProtocol: Sendable, Equatable {
        /// `explicit_http_config.http_protocol_options` (the default).
        case http1
        /// `explicit_http_config.http2_protocol_options`: prior knowledge in plaintext, ALPN `h2` over TLS.
        case http2
        /// `use_downstream_protocol_config`: HTTP/2 for requests that came over HTTP/2, else HTTP/1.1 (over TLS,
        /// each connection offers ALPN for its protocol).
        case downstream
        /// `auto_config`: each TLS connection offers ALPN `h2,http/1.1` and speaks what the upstream picks.
        case auto
    }
    public var upstreamProtocol = UpstreamProtocol.http1
    /// The options of the cluster's HTTP/2 connections (for `.http2`, `.downstream` and `.auto`).
    public var http2Options: HTTP2ProtocolOptions?
    /// Every request goes over HTTP/2.
    public var http2: Bool { upstreamProtocol == .http2 }
    /// The ALPN a TLS connection of the cluster offers when its UpstreamTlsContext names none, as Envoy's
    /// fallback: `h2` for HTTP/2 (and for HTTP/2 requests of a `use_downstream_protocol_config` cluster),
    /// `h2,http/1.1` for `auto_config`, nothing for HTTP/1.1.
    public var defaultALPN: [String] {
        switch upstreamProtocol {
        case .http1: return []
        case .http2, .downstream: return ["h2"]
        case .auto: return ["h2", "http/1.1"]
        }
    }
    /// Some connections of the cluster must speak HTTP/1.1 whatever the upstream prefers: the HTTP/1.1 requests
    /// of a `use_downstream_protocol_config` cluster, and upgrades (WebSocket) to an `auto_config` one.
    public var needsHTTP1OnlyALPN: Bool { upstreamProtocol == .downstream || upstreamProtocol == .auto }

    public init() {}
}

/// A route's (or virtual host's) `retry_policy`.
public struct RetryPolicyConfig: Sendable {
    /// The `retry_on` conditions Pilotfish knows. gRPC conditions are accepted in config and match
    /// `grpc-status` of the response.
    public struct RetryOn: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let fiveXX = RetryOn(rawValue: 1 << 0)
        public static let gatewayError = RetryOn(rawValue: 1 << 1)
        public static let reset = RetryOn(rawValue: 1 << 2)
        public static let connectFailure = RetryOn(rawValue: 1 << 3)
        public static let retriable4xx = RetryOn(rawValue: 1 << 4)
        public static let refusedStream = RetryOn(rawValue: 1 << 5)
        public static let retriableStatusCodes = RetryOn(rawValue: 1 << 6)
        public static let retriableHeaders = RetryOn(rawValue: 1 << 7)
        public static let envoyRateLimited = RetryOn(rawValue: 1 << 8)
        public static let http3PostConnectFailure = RetryOn(rawValue: 1 << 9)
        public static let resetBeforeRequest = RetryOn(rawValue: 1 << 10)
        public static let grpcCancelled = RetryOn(rawValue: 1 << 11)
        public static let grpcDeadlineExceeded = RetryOn(rawValue: 1 << 12)
        public static let grpcInternal = RetryOn(rawValue: 1 << 13)
        public static let grpcResourceExhausted = RetryOn(rawValue: 1 << 14)
        public static let grpcUnavailable = RetryOn(rawValue: 1 << 15)

        /// Envoy's spelling of each condition, as in `retry_on` and `x-envoy-retry-on`.
        public static let names: [(String, RetryOn)] = [
            ("5xx", .fiveXX), ("gateway-error", .gatewayError), ("reset", .reset),
            ("connect-failure", .connectFailure), ("retriable-4xx", .retriable4xx),
            ("refused-stream", .refusedStream), ("retriable-status-codes", .retriableStatusCodes),
            ("retriable-headers", .retriableHeaders), ("envoy-ratelimited", .envoyRateLimited),
            ("http3-post-connect-failure", .http3PostConnectFailure), ("reset-before-request", .resetBeforeRequest),
            ("cancelled", .grpcCancelled), ("deadline-exceeded", .grpcDeadlineExceeded),
            ("internal", .grpcInternal), ("resource-exhausted", .grpcResourceExhausted),
            ("unavailable", .grpcUnavailable),
        ]

        /// Parses a comma-separated list; unknown names are returned in `unknown` (Envoy ignores them in
        /// headers and rejects them in config).
        public static func parse(_ text: Substring) -> (RetryOn, unknown: [String]) {
            var out = RetryOn()
            var unknown: [String] = []
            for raw in text.split(separator: ",") {
                let name = raw.trimmingCharacters(in: .whitespaces)
                if name.isEmpty { continue }
                if let hit = names.first(where: { $0.0 == name }) { out.insert(hit.1) } else { unknown.append(name) }
            }
            return (out, unknown)
        }
    }

    public var retryOn: RetryOn = []
    /// `num_retries` (default 1).
    public var numRetries: Int = 1
    /// `per_try_timeout` (default: none, i.e. the route timeout bounds each try).
    public var perTryTimeout: ProtoDuration?
    public var perTryIdleTimeout: ProtoDuration?
    /// `retry_back_off`: base 25 ms, max 10 × base.
    public var backOffBase: ProtoDuration = .milliseconds(25)
    public var backOffMax: ProtoDuration?
    /// `retry_host_predicate: envoy.retry_host_predicates.previous_hosts`.
    public var avoidPreviousHosts: Bool = false
    /// `host_selection_retry_max_attempts` (default 1).
    public var hostSelectionRetryMaxAttempts: Int = 1
    public var retriableStatusCodes: [Int] = []
    /// `retriable_headers`: a response matching any of them is retriable (with `retriable-headers`).
    public var retriableHeaders: [HeaderMatcher] = []
    /// `retriable_request_headers`: the request is retried only if it matches one of them (when set).
    public var retriableRequestHeaders: [HeaderMatcher] = []

    public init() {}

    /// The effective maximum back-off interval.
    public var effectiveBackOffMax: ProtoDuration {
        backOffMax ?? ProtoDuration(nanoseconds: backOffBase.nanoseconds * 10)
    }
}

/// A route's `hash_policy` entry (RING_HASH / MAGLEV).
public struct HashPolicy: Sendable {
    public enum Source: Sendable {
        /// `header.header_name` (lower-cased).
        case header(String)
        /// `cookie.name` (generating cookies with `ttl` is not supported).
        case cookie(String)
        /// `connection_properties.source_ip`.
        case sourceIP
        /// `query_parameter.name`.
        case queryParameter(String)
    }

    public var source: Source
    /// `terminal`: stop at this policy when it produced a hash.
    public var terminal: Bool = false
}
