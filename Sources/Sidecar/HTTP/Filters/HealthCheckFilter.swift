import Atomics
import NIOCore
import NIOHTTP1
import SidecarCore

/// `envoy.filters.http.health_check`: answers the health checks of whoever balances load onto this proxy (Envoy's
/// health_check.cc). A request is a health check when it matches every `headers` matcher (no matchers: every
/// request is one); it is then left out of `downstream_rq_Nxx` and its response carries
/// `x-envoy-upstream-healthchecked-cluster: <node.cluster>`.
///
/// - Not `pass_through_mode`: the filter answers itself, 200, or 503 when admin `/healthcheck/fail` failed the
///   server or a `cluster_min_healthy_percentages` cluster is missing, empty (unless its minimum is 0) or has fewer
///   healthy hosts than its minimum percentage (truncated to a whole percent, as Envoy 1.40 does).
/// - `pass_through_mode`: the check goes upstream like any request, except that the filter answers 503 itself
///   while the server is failed, or with the cached answer while `cache_time` keeps one: the last health-check
///   response's status (and `x-envoy-degraded`), forgotten at every `cache_time` tick since start-up.
///
/// While the server is failed every response through this filter gets `x-envoy-immediate-health-check-fail: true`
/// (the connection manager also closes every HTTP/1 connection after its response then: Envoy's drain close).
///
/// The answer is given when the request headers arrive. Envoy waits for the end of the request: for a health check
/// with a body Pilotfish answers at once and closes the connection after the answer.
final class HealthCheckFilter: HTTPStreamFilter, HTTPFilterFactory, @unchecked Sendable {
    // Immutable after init (the cache is atomic); shared by every worker.
    static let typeURL = "type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck"
    static let registration = HTTPFilterRegistration(
        typeURL: typeURL, name: "envoy.filters.http.health_check",
        decode: { try HealthCheckFilterConfig.decode($0) },
        fields: [
            .init("envoy.extensions.filters.http.health_check.v3.HealthCheck", type: typeURL,
                  "pass_through_mode cache_time cluster_min_healthy_percentages headers"),
        ])

    static let checkedClusterHeader = "x-envoy-upstream-healthchecked-cluster"
    static let immediateFailHeader = "x-envoy-immediate-health-check-fail"
    static let degradedHeader = "x-envoy-degraded"

    let name: String
    let config: HealthCheckFilterConfig
    let stats: HealthCheckFilterStats
    let server: ServerContext
    let cache: HealthCheckCache?

    init(name: String, config: HealthCheckFilterConfig, stats: HealthCheckFilterStats, server: ServerContext) {
        self.name = name
        self.config = config
        self.stats = stats
        self.server = server
        cache = config.cacheTimeMilliseconds > 0
            ? HealthCheckCache(intervalNanoseconds: UInt64(config.cacheTimeMilliseconds) * 1_000_000,
                               start: NIODeadline.now().uptimeNanoseconds)
            : nil
    }

    func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter { self }

    func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        if stream.filterDisabled(name) || !isHealthCheck(head, stream) { return .continue }
        stream.isHealthCheck = true
        let cached = cache?.cached(now: NIODeadline.now().uptimeNanoseconds)
        // Not in pass-through mode the filter always answers; in it, only when failed or with a cached answer.
        guard !config.passThrough || server.healthCheckFailed || cached != nil else { return .continue }
        respond(stream, cached: cached)
        return .stopIteration
    }

    private func isHealthCheck(_ head: HTTPRequestHead, _ stream: HTTPFilterStream) -> Bool {
        if config.headers.isEmpty { return true }
        // Matchers see the request as earlier filters left it; pseudo-headers come from the request line.
        var request = stream.request
        request.method = head.method.rawValue
        request.path = head.uri
        request.headers = head.headers
        return config.headers.allSatisfy { m in m.matches { request.header($0) } }
    }

    /// Envoy's `onComplete`.
    private func respond(_ stream: HTTPFilterStream, cached: (status: Int, degraded: Bool)?) {
        let counters = stream.stats
        counters.inc(stats.requestTotal)
        var status = 200
        var degraded = false
        if server.healthCheckFailed {
            status = 503
        } else {
            if let cached {
                counters.inc(stats.cachedResponse)
                status = cached.status
                degraded = cached.degraded
            } else if let failure = clusterFailure(stream.snapshot) {
                counters.inc(failure)
                status = 503
            }
        }
        counters.inc((200..<300).contains(status) ? stats.ok : stats.failed)
        var extra = HTTPHeaders()
        if degraded {
            counters.inc(stats.degraded)
            extra.add(name: Self.degradedHeader, value: "")
        }
        stream.sendLocalReply(status: HTTPResponseStatus(statusCode: status), body: "", headers: extra)
    }

    /// The counter of the first `cluster_min_healthy_percentages` cluster (by name) that fails its minimum, as this
    /// worker sees the cluster's hosts (active health checks and its outlier ejections); nil when all pass.
    private func clusterFailure(_ snapshot: WorkerSnapshot) -> Int? {
        for (cluster, minimum) in config.clusterMinHealthyPercentages {
            guard let local = snapshot.cluster(named: cluster) else { return stats.failedClusterNotFound }
            let total = UInt64(local.hosts.count)
            if total == 0 {
                if minimum == 0 { continue }
                return stats.failedClusterEmpty
            }
            if 100 * UInt64(local.healthyCount) < total * minimum { return stats.failedClusterUnhealthy }
        }
        return nil
    }

    func encodeHeaders(_ head: inout HTTPResponseHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        if stream.filterDisabled(name) { return .continue }
        if stream.isHealthCheck {
            cache?.store(status: Int(head.status.code), degraded: head.headers.contains(name: Self.degradedHeader),
                         now: NIODeadline.now().uptimeNanoseconds)
            head.headers.replaceOrAdd(name: Self.checkedClusterHeader, value: server.localClusterName)
        }
        if server.healthCheckFailed { head.headers.replaceOrAdd(name: Self.immediateFailHeader, value: "true") }
        return .continue
    }
}

/// `envoy.extensions.filters.http.health_check.v3.HealthCheck`.
struct HealthCheckFilterConfig: Sendable {
    var passThrough: Bool
    var headers: [HeaderMatcher] = []
    /// `cache_time` in whole milliseconds (0: no cache), as Envoy reads it.
    var cacheTimeMilliseconds: Int64 = 0
    /// Cluster → minimum healthy percentage, truncated to a whole percent, by cluster name. Empty in pass-through
    /// mode, where Envoy ignores it.
    var clusterMinHealthyPercentages: [(cluster: String, percent: UInt64)] = []

    static func decode(_ obj: ConfigObject) throws -> HealthCheckFilterConfig {
        guard let passValue = obj.optional("pass_through_mode") else {
            throw obj.value.error("missing required field 'pass_through_mode' (Envoy requires it)")
        }
        var c = HealthCheckFilterConfig(passThrough: try passValue.bool())
        c.headers = try obj.list("headers").map(HeaderMatcher.decode)
        if let t = obj.optional("cache_time") {
            let d = try t.duration()
            c.cacheTimeMilliseconds = d.nanoseconds / 1_000_000
            if !c.passThrough && c.cacheTimeMilliseconds != 0 {
                throw t.error("cache_time must not be set when pass_through_mode is false "
                    + "(Envoy: cache_time_ms must not be set when path_through_mode is disabled)")
            }
        }
        var minimums: [(String, UInt64)] = []
        for (cluster, v) in try obj.optional("cluster_min_healthy_percentages")?.map() ?? [] {
            let p = try v.object()
            let valueField = p.optional("value")
            let value = try valueField?.double() ?? 0
            guard value >= 0 && value <= 100 else {
                throw (valueField ?? v).error("cluster_min_healthy_percentages[\(cluster)]: value must be inside "
                    + "range [0, 100]")
            }
            try p.finish()
            minimums.append((cluster, UInt64(value)))
        }
        if !c.passThrough {
            // Envoy's std::map: by cluster name.
            c.clusterMinHealthyPercentages = minimums.sorted { $0.0 < $1.0 }.map { (cluster: $0.0, percent: $0.1) }
        }
        try obj.finish()
        return c
    }
}

extension HealthCheckFilterConfig: HTTPFilterConfig {
    func makeFactory(_ context: HTTPFilterBuildContext) -> any HTTPFilterFactory {
        HealthCheckFilter(name: context.filterName, config: self,
                          stats: HealthCheckFilterStats(statPrefix: context.statPrefix, registry: context.registry),
                          server: context.server)
    }
}

/// `http.<stat_prefix>.health_check.*`, Envoy's eight counters.
struct HealthCheckFilterStats: Sendable {
    let requestTotal, failed, ok, cachedResponse, failedClusterNotFound, failedClusterEmpty,
        failedClusterUnhealthy, degraded: Int

    init(statPrefix: String, registry r: StatsRegistry) {
        let label = ("envoy_http_conn_manager_prefix", statPrefix)
        func reg(_ s: String) -> Int {
            r.registerOnce("http.\(statPrefix).health_check.\(s)", .counter, family: "http.health_check.\(s)",
                           labels: [label])
        }
        cachedResponse = reg("cached_response")
        degraded = reg("degraded")
        failed = reg("failed")
        failedClusterEmpty = reg("failed_cluster_empty")
        failedClusterNotFound = reg("failed_cluster_not_found")
        failedClusterUnhealthy = reg("failed_cluster_unhealthy")
        ok = reg("ok")
        requestTotal = reg("request_total")
    }
}

/// The pass-through answer cache every worker shares (Envoy's `HealthCheckCacheManager`): the status (and
/// degraded flag) of the last health-check response, usable until the next `cache_time` tick. Envoy clears it with
/// a timer every `cache_time` from start-up; here the tick is the whole number of intervals since start-up, kept
/// with the answer in one atomic word.
final class HealthCheckCache: Sendable {
    let intervalNanoseconds: UInt64
    let start: UInt64
    /// valid (bit 63) | degraded (bit 62) | status (bits 32–47) | tick (bits 0–31).
    private let state = ManagedAtomic<UInt64>(0)

    init(intervalNanoseconds: UInt64, start: UInt64) {
        self.intervalNanoseconds = max(intervalNanoseconds, 1)
        self.start = start
    }

    private func tick(_ now: UInt64) -> UInt64 { ((now &- start) / intervalNanoseconds) & 0xffff_ffff }

    func store(status: Int, degraded: Bool, now: UInt64) {
        let word = 1 << 63 | (degraded ? 1 << 62 : 0) | UInt64(status & 0xffff) << 32 | tick(now)
        state.store(word, ordering: .relaxed)
    }

    func cached(now: UInt64) -> (status: Int, degraded: Bool)? {
        let word = state.load(ordering: .relaxed)
        guard word >> 63 == 1, word & 0xffff_ffff == tick(now) else { return nil }
        return (Int((word >> 32) & 0xffff), (word >> 62) & 1 == 1)
    }
}
