import NIOCore
import NIOHTTP1

/// `envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit`, for the filter and for a route's
/// `typed_per_filter_config`. Each config owns its token bucket (shared by every worker) and, once the server
/// registered them, its counters.
struct LocalRateLimitConfig: Sendable {
    var statPrefix: String
    /// Without a token bucket nothing is limited (Envoy's filter then only counts `enabled` and `ok`).
    var bucket: SharedTokenBucket?
    var status: Int = 429
    /// Evaluated through the server's runtime: a `runtime_key` with a value overrides the default.
    var filterEnabled = RuntimeFractionalPercent.zero
    var filterEnforced = RuntimeFractionalPercent.zero
    var responseHeadersToAdd: [HeaderMutations.Addition] = []
    var requestHeadersToAddWhenNotEnforced: [HeaderMutations.Addition] = []
    var perConnection = false
    var xRateLimitHeaders = false
    let stats: LocalRateLimitStats

    static func decode(_ obj: ConfigObject) throws -> LocalRateLimitConfig {
        try obj.unsupported([
            "descriptors", "stage", "vh_rate_limits", "always_consume_default_token_bucket",
            "rate_limited_as_resource_exhausted", "max_dynamic_descriptors", "local_cluster_rate_limit",
            "rate_limits", "local_rate_limit_per_downstream_connection_enabled_runtime",
        ])
        var c = LocalRateLimitConfig(statPrefix: try obj.required("stat_prefix").nonEmptyString(),
                                     stats: LocalRateLimitStats())
        if let tb = try obj.optional("token_bucket")?.object() {
            let maxTokens = try tb.required("max_tokens").int(min: 0, max: Int64(UInt32.max))
            let perFill = try tb.optional("tokens_per_fill")?.int(min: 1, max: Int64(UInt32.max)) ?? 1
            let intervalValue = try tb.required("fill_interval")
            let interval = try intervalValue.duration()
            if interval.nanoseconds < 50_000_000 {
                throw intervalValue.error("fill_interval must be at least 50ms (Envoy's minimum)")
            }
            try tb.finish()
            let bucket = TokenBucket(maxTokens: UInt32(maxTokens), tokensPerFill: UInt32(perFill),
                                     fillIntervalNanoseconds: interval.nanoseconds)
            c.bucket = SharedTokenBucket(bucket, start: NIODeadline.now().uptimeNanoseconds)
        }
        if let s = obj.optional("status") {
            // Envoy answers 429 for a configured status below 400.
            let code = try HTTPStatusCode.decodeHTTPStatus(s)
            c.status = code < 400 ? 429 : code
        }
        c.filterEnabled = try obj.optional("filter_enabled").map(FractionalPercent.decodeRuntime) ?? .zero
        c.filterEnforced = try obj.optional("filter_enforced").map(FractionalPercent.decodeRuntime) ?? .zero
        c.responseHeadersToAdd = try HeaderMutations.decodeAdditions(obj.optional("response_headers_to_add"))
        c.requestHeadersToAddWhenNotEnforced = try HeaderMutations.decodeAdditions(
            obj.optional("request_headers_to_add_when_not_enforced"))
        c.perConnection = try obj.optional("local_rate_limit_per_downstream_connection")?.bool() ?? false
        if let x = obj.optional("enable_x_ratelimit_headers") {
            switch try x.string() {
            case "OFF": c.xRateLimitHeaders = false
            case "DRAFT_VERSION_03": c.xRateLimitHeaders = true
            case let other: throw x.error("unknown value '\(other)'; expected one of: OFF, DRAFT_VERSION_03")
            }
        }
        try obj.finish()
        return c
    }
}

/// `<stat_prefix>.http_local_rate_limit.{enabled,enforced,rate_limited,ok}`. Slots are assigned when the server
/// registers stats, before any worker runs; configs that share a stat prefix share the counters, as in Envoy.
final class LocalRateLimitStats: @unchecked Sendable {
    // Written once at start-up (registerStats), read-only while workers run.
    private(set) var enabled = -1, enforced = -1, rateLimited = -1, ok = -1
    /// `shadow_mode`: Envoy 1.40 creates it with the others; nothing Pilotfish supports moves it (nor did
    /// anything in Envoy's own runs of the acceptance suite).
    private(set) var shadowMode = -1

    func register(statPrefix: String, _ r: StatsRegistry) {
        guard enabled < 0 else { return }
        func reg(_ s: String) -> Int {
            r.registerOnce("\(statPrefix).http_local_rate_limit.\(s)", .counter,
                           family: "http_local_rate_limit.\(s)", labels: [("envoy_local_http_ratelimit_prefix", statPrefix)])
        }
        enabled = reg("enabled")
        enforced = reg("enforced")
        rateLimited = reg("rate_limited")
        ok = reg("ok")
        shadowMode = reg("shadow_mode")
    }
}

extension LocalRateLimitConfig: HTTPFilterConfig, StartupRegistering {
    func makeFactory(_ context: HTTPFilterBuildContext) -> any HTTPFilterFactory {
        registerStats(context.registry)
        return LocalRateLimitFilter(name: context.filterName, config: self, runtime: context.server.runtime)
    }

    func registerStats(_ registry: StatsRegistry) {
        stats.register(statPrefix: statPrefix, registry)
    }
}
