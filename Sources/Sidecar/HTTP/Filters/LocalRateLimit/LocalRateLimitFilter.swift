import NIOCore
import NIOHTTP1
import SidecarCore

/// `envoy.filters.http.local_ratelimit`: a token bucket per filter (or per route, or per downstream connection)
/// that every worker takes from. A request is counted `enabled` when `filter_enabled` selects it; it passes (`ok`)
/// when it gets a token; otherwise it is `rate_limited`, and when `filter_enforced` selects it too, `enforced`
/// and answered with a local reply (429 `local_rate_limited` by default, with `response_headers_to_add`).
/// `enable_x_ratelimit_headers: DRAFT_VERSION_03` adds `x-ratelimit-limit/remaining/reset` to responses.
final class LocalRateLimitFilter: HTTPStreamFilter, HTTPFilterFactory, @unchecked Sendable {
    // Immutable; shared by every worker.
    static let typeURL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
    static let registration = HTTPFilterRegistration(
        typeURL: typeURL, name: "envoy.filters.http.local_ratelimit",
        decode: { try LocalRateLimitConfig.decode($0) },
        perRoute: [(typeURL, { @Sendable (o: ConfigObject) throws -> any Sendable in
            let config = try LocalRateLimitConfig.decode(o)
            guard config.bucket != nil else {
                throw o.value.error("token_bucket is required in a per-route LocalRateLimit (Envoy: local rate limit "
                    + "token bucket must be set for per filter configs)")
            }
            return config
        })],
        fields: [
            .init("envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit", type: typeURL, """
                stat_prefix status token_bucket filter_enabled filter_enforced request_headers_to_add_when_not_enforced
                response_headers_to_add descriptors stage local_rate_limit_per_downstream_connection
                local_cluster_rate_limit enable_x_ratelimit_headers vh_rate_limits always_consume_default_token_bucket
                rate_limited_as_resource_exhausted rate_limits max_dynamic_descriptors
                local_rate_limit_per_downstream_connection_enabled_runtime
                """),
            .init("envoy.extensions.common.ratelimit.v3.LocalRateLimitDescriptor", "entries token_bucket"),
            .init("envoy.extensions.common.ratelimit.v3.RateLimitDescriptor.Entry", "key value"),
            .init("envoy.type.v3.TokenBucket", "max_tokens tokens_per_fill fill_interval"),
            .init("envoy.type.v3.HttpStatus", "code"),
        ])

    static let limitedBody = "local_rate_limited"

    let name: String
    let config: LocalRateLimitConfig
    /// What `filter_enabled` / `filter_enforced` runtime keys read (route configs included).
    let runtime: Runtime?

    init(name: String, config: LocalRateLimitConfig, runtime: Runtime? = nil) {
        self.name = name
        self.config = config
        self.runtime = runtime
    }

    func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter { self }

    /// The route's config, else the filter's; nil when the route disables the filter.
    private func settings(_ stream: HTTPFilterStream) -> LocalRateLimitConfig? {
        if let perRoute = stream.perRouteConfig(name, as: LocalRateLimitConfig.self) { return perRoute }
        return stream.filterDisabled(name) ? nil : config
    }

    /// The bucket a request of this stream takes from: `shared`, or this connection's own copy of it.
    private func bucket(_ shared: SharedTokenBucket, _ c: LocalRateLimitConfig, _ stream: HTTPFilterStream)
        -> SharedTokenBucket
    {
        guard c.perConnection else { return shared }
        return stream.connectionFilterState.value(for: shared) {
            SharedTokenBucket(shared.bucket, start: NIODeadline.now().uptimeNanoseconds)
        }
    }

    /// The buckets this request takes from, descriptor buckets first, and whether the default one is among them
    /// (Envoy: a descriptor match consumes from the default too when `always_consume_default_token_bucket`).
    private func buckets(_ c: LocalRateLimitConfig, _ stream: HTTPFilterStream) -> [SharedTokenBucket] {
        var out = c.matchedDescriptorBuckets(stream).map { bucket($0, c, stream) }
        if let shared = c.bucket, out.isEmpty || c.alwaysConsumeDefault { out.append(bucket(shared, c, stream)) }
        return out
    }

    func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        guard let c = settings(stream), c.filterEnabled.evaluate(runtime, random: stream.worker.random.next()) else { return .continue }
        let stats = stream.stats
        stats.inc(c.stats.enabled)
        // The clock is read after the buckets exist: a per-connection bucket made now starts full now.
        let allowed: Bool
        if c.descriptors.isEmpty {
            // The common case, without an array per request.
            if let shared = c.bucket {
                let b = bucket(shared, c, stream)
                allowed = b.tryTake(now: NIODeadline.now().uptimeNanoseconds)
            } else {
                allowed = true
            }
        } else {
            let takers = buckets(c, stream)
            let now = NIODeadline.now().uptimeNanoseconds
            allowed = takers.allSatisfy { $0.tryTake(now: now) }
        }
        if allowed {
            stats.inc(c.stats.ok)
            return .continue
        }
        stats.inc(c.stats.rateLimited)
        guard c.filterEnforced.evaluate(runtime, random: stream.worker.random.next()) else {
            if !c.requestHeadersToAddWhenNotEnforced.isEmpty {
                var m = HeaderMutations()
                m.requestAdd = c.requestHeadersToAddWhenNotEnforced
                m.applyRequest(to: &head.headers, context: stream.codec.formatContext())
            }
            return .continue
        }
        stats.inc(c.stats.enforced)
        stream.codec.setResponseFlag(.rateLimited)
        var extra = HTTPHeaders()
        if !c.responseHeadersToAdd.isEmpty {
            var m = HeaderMutations()
            m.responseAdd = c.responseHeadersToAdd
            m.applyResponse(to: &extra, context: stream.codec.formatContext())
        }
        stream.sendLocalReply(status: HTTPResponseStatus(statusCode: c.status), body: Self.limitedBody,
                              headers: extra, details: "local_rate_limited")
        return .stopIteration
    }

    func encodeHeaders(_ head: inout HTTPResponseHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        guard let c = settings(stream), c.xRateLimitHeaders else { return .continue }
        guard let b = c.descriptors.isEmpty ? c.bucket.map({ bucket($0, c, stream) }) : buckets(c, stream).first
        else { return .continue }
        let now = NIODeadline.now().uptimeNanoseconds
        head.headers.replaceOrAdd(name: "x-ratelimit-limit", value: String(b.maxTokens))
        head.headers.replaceOrAdd(name: "x-ratelimit-remaining", value: String(b.remaining(now: now)))
        head.headers.replaceOrAdd(name: "x-ratelimit-reset", value: String(b.secondsUntilNextToken(now: now)))
        return .continue
    }
}
