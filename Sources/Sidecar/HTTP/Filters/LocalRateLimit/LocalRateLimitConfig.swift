import NIOCore
import NIOHTTP1
import SidecarCore

/// `envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit`, for the filter and for a route's
/// `typed_per_filter_config`. Each config owns its token bucket (shared by every worker) and, once the server
/// registered them, its counters. A class: requests read it through a reference (a struct this size cost a dozen
/// retains per copy, twice per request). Written only while it is decoded.
final class LocalRateLimitConfig: @unchecked Sendable {
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
    /// `descriptors`: buckets for requests whose route `rate_limits` produce these entries.
    var descriptors: [(entries: [RateLimitPolicy.Entry], bucket: SharedTokenBucket)] = []
    /// `always_consume_default_token_bucket` (default true): a request a descriptor let through also takes a
    /// token from the default bucket.
    var alwaysConsumeDefault = true
    /// `vh_rate_limits`: whether the virtual host's `rate_limits` apply (OVERRIDE: only when the route has none).
    enum VirtualHostRateLimits: String, CaseIterable { case OVERRIDE, INCLUDE, IGNORE }
    var virtualHostRateLimits = VirtualHostRateLimits.OVERRIDE
    let stats: LocalRateLimitStats

    init(statPrefix: String, stats: LocalRateLimitStats) {
        self.statPrefix = statPrefix
        self.stats = stats
    }

    static func decode(_ obj: ConfigObject) throws -> LocalRateLimitConfig {
        try obj.unsupported([
            "stage", "rate_limited_as_resource_exhausted", "max_dynamic_descriptors", "local_cluster_rate_limit",
            "rate_limits", "local_rate_limit_per_downstream_connection_enabled_runtime",
        ])
        let c = LocalRateLimitConfig(statPrefix: try obj.required("stat_prefix").nonEmptyString(),
                                     stats: LocalRateLimitStats())
        if let tb = obj.optional("token_bucket") {
            c.bucket = SharedTokenBucket(try decodeBucket(tb), start: NIODeadline.now().uptimeNanoseconds)
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
        c.alwaysConsumeDefault = try obj.optional("always_consume_default_token_bucket")?.bool() ?? true
        if let v = obj.optional("vh_rate_limits") { c.virtualHostRateLimits = try v.enumValue(VirtualHostRateLimits.self) }
        for item in try obj.list("descriptors") {
            let d = try item.object()
            let entriesValue = try d.required("entries")
            let entries: [RateLimitPolicy.Entry] = try entriesValue.array().map { e in
                let o = try e.object()
                let entry = (key: try o.required("key").nonEmptyString(), value: try o.optional("value")?.string() ?? "")
                try o.finish()
                return entry
            }
            if entries.isEmpty { throw entriesValue.error("a descriptor needs at least one entry") }
            if entries.contains(where: { $0.value.isEmpty }) {
                throw entriesValue.error("descriptor entries without a value (wildcards) are not supported by Pilotfish yet")
            }
            if c.descriptors.contains(where: { Self.sameEntries($0.entries, entries) }) {
                let text = entries.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
                throw entriesValue.error("duplicate descriptor in the local rate descriptor: \(text)")
            }
            let bucket = try decodeBucket(try d.required("token_bucket"))
            try d.finish()
            c.descriptors.append((entries, SharedTokenBucket(bucket, start: NIODeadline.now().uptimeNanoseconds)))
        }
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

extension LocalRateLimitConfig {
    /// `envoy.type.v3.TokenBucket`.
    static func decodeBucket(_ value: ConfigValue) throws -> TokenBucket {
        let tb = try value.object()
        let maxTokens = try tb.required("max_tokens").int(min: 0, max: Int64(UInt32.max))
        let perFill = try tb.optional("tokens_per_fill")?.int(min: 1, max: Int64(UInt32.max)) ?? 1
        let intervalValue = try tb.required("fill_interval")
        let interval = try intervalValue.duration()
        if interval.nanoseconds < 50_000_000 {
            throw intervalValue.error("fill_interval must be at least 50ms (Envoy's minimum)")
        }
        try tb.finish()
        return TokenBucket(maxTokens: UInt32(maxTokens), tokensPerFill: UInt32(perFill),
                           fillIntervalNanoseconds: interval.nanoseconds)
    }

    static func sameEntries(_ a: [RateLimitPolicy.Entry], _ b: [RateLimitPolicy.Entry]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }

    /// The descriptor buckets the route's `rate_limits` select for this request, in the order they were made.
    func matchedDescriptorBuckets(_ stream: HTTPFilterStream) -> [SharedTokenBucket] {
        guard !descriptors.isEmpty, case .forward(let target) = stream.route else { return [] }
        let policies: [RateLimitPolicy]
        switch virtualHostRateLimits {
        case .OVERRIDE: policies = target.rateLimits.isEmpty ? target.virtualHostRateLimits : target.rateLimits
        case .INCLUDE: policies = target.rateLimits + target.virtualHostRateLimits
        case .IGNORE: policies = target.rateLimits
        }
        guard !policies.isEmpty else { return [] }
        let request = stream.request
        let peer = stream.downstream.remoteAddress.flatMap { IPAddress($0) }
        let remote = stream.codec.forwardedClientAddress(request.headers) ?? peer
        var out: [SharedTokenBucket] = []
        for p in policies {
            guard let entries = p.descriptor(request, cluster: target.cluster, remote: remote) else { continue }
            if let d = descriptors.first(where: { Self.sameEntries($0.entries, entries) }) { out.append(d.bucket) }
        }
        return out
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
