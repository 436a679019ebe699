/// `envoy.config.route.v3.RouteConfiguration`, decoded and compiled for matching.
public struct RouteConfiguration: Sendable {
    public var name: String
    public var virtualHosts: [VirtualHost]
    public var headers: HeaderMutations

    /// Virtual host lookup tables, built once. Envoy's precedence: exact, then the longest `*.suffix`,
    /// then the longest `prefix.*`, then `*`.
    package var exactDomains: [String: Int] = [:]
    package var suffixDomains: [(suffix: String, index: Int)] = []
    package var prefixDomains: [(prefix: String, index: Int)] = []
    package var defaultHost: Int?

    public var metadata = Metadata()
    /// `typed_per_filter_config`, by HTTP filter name.
    public var typedPerFilterConfig: [String: PerRouteFilterConfig] = [:]

    /// `internal_only_headers`, lower-cased: removed from every request that is not internal before it is
    /// routed, as Envoy's connection manager does. Pseudo-headers and `host` are left out: in Envoy, removing
    /// them by these names touches nothing.
    public var internalOnlyHeaders: [String] = []
    /// `validate_clusters`: whether every cluster a route names must exist when the config loads (nil: Envoy's
    /// default for an inline route_config, yes).
    public var validateClusters: Bool? = nil
    /// The server's runtime, which `runtime_fraction` keys read (set when a server runs this table; nil: every
    /// key is absent and the default fractions decide).
    package var runtime: Runtime? = nil
    /// Some header value of the table reads the clock (`%START_TIME%`, durations): streams note when they start.
    public var formatsReadTiming = false

    /// Every level's header mutations: the table's, its virtual hosts', routes' and weighted clusters'.
    package var allHeaderMutations: [HeaderMutations] {
        var all = [headers]
        for vh in virtualHosts {
            all.append(vh.headers)
            for r in vh.routes {
                all.append(r.headers)
                if case .forward(let f) = r.action, case .weighted(let clusters, _) = f.cluster {
                    all += clusters.map(\.headers)
                }
            }
        }
        return all
    }
}

public struct VirtualHost: Sendable {
    public enum TLSRequirement: String, Sendable, CaseIterable { case NONE, EXTERNAL_ONLY, ALL }
    public var name: String
    public var domains: [String]
    public var routes: [Route]
    public var requireTLS: TLSRequirement
    public var headers: HeaderMutations
    public var metadata = Metadata()
    /// `typed_per_filter_config`, by HTTP filter name.
    public var typedPerFilterConfig: [String: PerRouteFilterConfig] = [:]
    /// `retry_policy`: used by routes that have none of their own.
    public var retryPolicy: RetryPolicyConfig?
    /// `include_request_attempt_count`: send `x-envoy-attempt-count` upstream.
    public var includeRequestAttemptCount = false
    /// `include_attempt_count_in_response`: send `x-envoy-attempt-count` downstream.
    public var includeAttemptCountInResponse = false
    /// `per_request_buffer_limit_bytes`: how much request body is kept for retries (default: the
    /// listener's connection buffer limit).
    public var perRequestBufferLimitBytes: Int?
    /// `virtual_clusters`: named classes of requests (statistics only; see `virtualClusterName`).
    public var virtualClusters: [VirtualCluster] = []
    /// `rate_limits` (used by rate limit filters as their `vh_rate_limits` says).
    public var rateLimits: [RateLimitPolicy] = []
    /// The deprecated `cors` field: the CORS filter's policy when no `typed_per_filter_config` gives one.
    package var cors: CORSPolicy?
}

public struct Route: Sendable {
    public var name: String?
    public var match: RouteMatch
    public var action: RouteAction
    public var headers: HeaderMutations
    /// `metadata.filter_metadata`: opaque to routing, kept for whoever reads the route (config dump, filters).
    public var metadata = Metadata()
    /// `typed_per_filter_config`, by HTTP filter name.
    public var typedPerFilterConfig: [String: PerRouteFilterConfig] = [:]
    /// `per_request_buffer_limit_bytes` (overrides the virtual host's).
    public var perRequestBufferLimitBytes: Int?
    /// `decorator`: the operation name of this route's spans.
    public var decorator: RouteDecorator?
    /// The forwarding decision of a route whose target is the same for every request (a named cluster, no path
    /// rewrite), built once when a config snapshot resolves the table's clusters: the hot path then routes
    /// without building a target per request. nil: built per request.
    package var fixedTarget: ForwardTarget? = nil
}

public struct RouteMatch: Sendable {
    public enum PathRule: Sendable {
        case prefix(String)
        case path(String)
        case regex(CompiledRegex)
        case separatedPrefix(String)
        /// `connect_matcher: {}`: CONNECT requests, and only them.
        case connect
    }

    public var path: PathRule
    public var caseSensitive: Bool
    public var headers: [HeaderMatcher]
    public var queryParameters: [QueryParameterMatcher]
    public var runtimeFraction: RuntimeFraction?
    /// `grpc: {}`: only requests whose content-type is `application/grpc` or `application/grpc+…`.
    public var grpc = false
    /// `dynamic_metadata`: all must match the request's dynamic metadata.
    public var dynamicMetadata: [MetadataMatcher] = []
}

/// `runtime_fraction`: the runtime key's value (a FractionalPercent, or an integer percentage) decides with the
/// request's random value, and the default fraction when the runtime has no usable value for the key (Envoy's
/// `featureEnabled`).
public struct RuntimeFraction: Sendable {
    public var runtimeKey: String?
    public var numerator: UInt64
    public var denominator: UInt64
}

public enum RouteAction: Sendable {
    case forward(ForwardAction)
    case directResponse(DirectResponse)
    case redirect(Redirect)
}

public struct ForwardAction: Sendable {
    public enum ClusterChoice: Sendable {
        case named(String)
        case fromHeader(String)
        case weighted([WeightedCluster], total: UInt64)
    }

    public struct WeightedCluster: Sendable {
        public var name: String
        public var weight: UInt64
        public var headers: HeaderMutations
        /// `name` in the config snapshot that runs this table (`resolvingClusters`).
        package var slot: ClusterSlot? = nil
    }

    public var cluster: ClusterChoice
    /// A `.named` cluster in the config snapshot that runs this table (`resolvingClusters`).
    package var clusterSlot: ClusterSlot? = nil
    public var prefixRewrite: String?
    public var regexRewrite: (pattern: CompiledRegex, substitution: String)?
    public var hostRewriteLiteral: String?
    public var autoHostRewrite: Bool
    /// The route timeout; zero disables it. Envoy's default is 15 s.
    public var timeout: ProtoDuration
    /// `retry_policy` (overrides the virtual host's).
    public var retryPolicy: RetryPolicyConfig?
    /// `hash_policy`, for RING_HASH and MAGLEV clusters.
    public var hashPolicies: [HashPolicy] = []
    /// `priority`: which circuit-breaker thresholds apply.
    public var priority: CircuitBreakerThresholds.Priority = .DEFAULT
    /// `idle_timeout`: overrides the connection manager's `stream_idle_timeout`.
    public var idleTimeout: ProtoDuration?
    /// The deprecated `cors` field (more specific than the virtual host's).
    package var cors: CORSPolicy?
    /// `rate_limits`: the descriptors rate limit filters match.
    public var rateLimits: [RateLimitPolicy] = []
    /// `request_mirror_policies`: clusters that get a copy of each request.
    public var mirrorPolicies: [MirrorPolicy] = []
    /// `upgrade_configs`: per upgrade type (lower case), whether the route allows it, over the connection manager's.
    public var upgradeConfigs: [String: Bool] = [:]
    /// `max_stream_duration.grpc_timeout_header_max` (or the deprecated `max_grpc_timeout`): a gRPC request's
    /// route timeout comes from its `grpc-timeout`, capped at this (zero: uncapped); with the header offset
    /// (`grpc_timeout_header_offset` / `grpc_timeout_offset`) taken off. Nil: the route timeout applies.
    public var maxGRPCTimeout: ProtoDuration?
    public var grpcTimeoutOffset: ProtoDuration?
    /// The route's CONNECT upgrade has `connect_config`: the proxy answers CONNECT itself (200) and carries the
    /// bytes to the cluster over TCP, instead of passing the CONNECT on.
    public var terminatesConnect = false
}

public struct DirectResponse: Sendable {
    public var status: Int
    public var body: [UInt8]?
}

public struct Redirect: Sendable {
    public enum PathChange: Sendable {
        case none
        case path(String)
        case prefix(String)
        case regex(CompiledRegex, String)
    }

    public var scheme: String?
    public var host: String?
    public var port: Int?
    public var path: PathChange
    public var status: Int
    public var stripQuery: Bool
}

extension RouteConfiguration {
    /// No virtual host: every request is answered 404 (NR).
    package static var empty: RouteConfiguration { RouteConfiguration(name: "", virtualHosts: [], headers: HeaderMutations()) }
}
