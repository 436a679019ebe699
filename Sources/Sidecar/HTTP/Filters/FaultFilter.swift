import Atomics
import NIOCore
import NIOHTTP1
import SidecarCore

/// `envoy.filters.http.fault`: delays and aborts requests, to test how callers cope (Envoy's fault_filter.cc).
///
/// For each request, unless the route's `typed_per_filter_config` replaces the settings: the request must match
/// `headers` and `upstream_cluster`; then a delay is injected with the delay percentage (the header delay takes its
/// duration from `x-envoy-fault-delay-request`), and after it, or instead of it, an abort with the abort
/// percentage: a local reply `fault filter abort` with the configured (or `x-envoy-fault-abort-request`) status.
/// One request counts once in `max_active_faults` however many faults it gets; over the limit a request passes
/// untouched and `faults_overflow` counts.
final class FaultFilter: HTTPStreamFilter, HTTPFilterFactory, @unchecked Sendable {
    // Immutable after init apart from `active` (atomic); shared by every worker.
    static let typeURL = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
    static let registration = HTTPFilterRegistration(
        typeURL: typeURL, name: "envoy.filters.http.fault",
        decode: { try FaultConfig.decode($0) },
        perRoute: [(typeURL, { @Sendable (o: ConfigObject) throws -> any Sendable in try FaultConfig.decode(o) })],
        fields: [
            .init("envoy.extensions.filters.http.fault.v3.HTTPFault", type: typeURL, """
                delay abort upstream_cluster headers downstream_nodes max_active_faults response_rate_limit
                delay_percent_runtime abort_percent_runtime delay_duration_runtime abort_http_status_runtime
                max_active_faults_runtime response_rate_limit_percent_runtime abort_grpc_status_runtime
                disable_downstream_cluster_stats filter_metadata
                """),
            .init("envoy.extensions.filters.common.fault.v3.FaultDelay", "fixed_delay header_delay percentage"),
            .init("envoy.extensions.filters.http.fault.v3.FaultAbort", "http_status grpc_status header_abort percentage"),
        ])

    static let abortBody = "fault filter abort"

    let name: String
    let config: FaultConfig
    let stats: FaultStats
    /// Requests with an active fault, across workers (`active_faults`, checked against `max_active_faults`).
    let active: ManagedAtomic<Int>

    init(name: String, config: FaultConfig, stats: FaultStats, active: ManagedAtomic<Int>) {
        self.name = name
        self.config = config
        self.stats = stats
        self.active = active
    }

    func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter { self }

    func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        if stream.filterDisabled(name) { return .continue }
        let settings = stream.perRouteConfig(name, as: FaultConfig.self) ?? config
        guard settings.applies(to: stream) else { return .continue }
        let headers = head.headers
        if let delay = settings.delayDuration(headers, random: stream.worker.random.next()) {
            guard takeActiveFault(settings, stream) else { return .continue }
            stream.stats.inc(stats.delaysInjected)
            stream.codec.setResponseFlag(.delayInjected)
            countDownstreamCluster("delays_injected", settings, headers)
            stream.schedule(in: .milliseconds(Int64(delay))) { [self] in
                // Delays can be followed by aborts (the abort percentage is drawn again).
                if !abortIfEnabled(settings, headers, stream) { stream.continueDecoding() }
            }
            return .stopIteration
        }
        if settings.abort(headers, random: stream.worker.random.next()) != nil {
            guard takeActiveFault(settings, stream) else { return .continue }
            _ = abortIfEnabled(settings, headers, stream, alreadyDecided: true)
            return .stopIteration
        }
        return .continue
    }

    /// Envoy also counts a fault under the caller's service cluster (`x-envoy-downstream-service-cluster`):
    /// `http.<prefix>.fault.<cluster>.<counter>`, created when first counted, unless
    /// `disable_downstream_cluster_stats`.
    private func countDownstreamCluster(_ counter: String, _ settings: FaultConfig, _ headers: HTTPHeaders) {
        guard !settings.disableDownstreamClusterStats,
              let cluster = headers.first(name: "x-envoy-downstream-service-cluster"), !cluster.isEmpty
        else { return }
        stats.dynamic.add(
            "http.\(stats.statPrefix).fault.\(cluster).\(counter)", family: "http.fault.\(counter)",
            labels: [("envoy_fault_downstream_cluster", cluster), ("envoy_http_conn_manager_prefix", stats.statPrefix)])
    }

    /// Envoy's `tryIncActiveFaults`: a request is charged once; over `max_active_faults` it gets no fault.
    private func takeActiveFault(_ settings: FaultConfig, _ stream: HTTPFilterStream) -> Bool {
        let limit = settings.maxActiveFaults ?? Int.max
        while true {
            let current = active.load(ordering: .relaxed)
            if current >= limit {
                stream.stats.inc(stats.faultsOverflow)
                return false
            }
            if active.compareExchange(expected: current, desired: current + 1, ordering: .relaxed).exchanged { break }
        }
        stream.onEnd { [active] in active.wrappingDecrement(ordering: .relaxed) }
        return true
    }

    /// Sends the abort if the abort fault applies; `alreadyDecided`: the caller drew the percentage.
    private func abortIfEnabled(_ settings: FaultConfig, _ headers: HTTPHeaders, _ stream: HTTPFilterStream,
                                alreadyDecided: Bool = false) -> Bool {
        let decision = settings.abort(headers, random: alreadyDecided ? 0 : stream.worker.random.next(),
                                      skipPercentage: alreadyDecided)
        guard let abort = decision else { return false }
        stream.stats.inc(stats.abortsInjected)
        stream.codec.setResponseFlag(.faultInjected)
        countDownstreamCluster("aborts_injected", settings, headers)
        switch abort {
        case .http(let status):
            stream.sendLocalReply(status: HTTPResponseStatus(statusCode: status), body: Self.abortBody,
                                  details: "fault_filter_abort")
        case .grpc(let code):
            // A gRPC request gets the status as a trailers-only reply; any other request gets 200 with the body,
            // as Envoy 1.40 answers it.
            stream.sendLocalReply(status: .ok, body: Self.abortBody, grpcStatus: code, details: "fault_filter_abort")
        }
        return true
    }
}

/// The fault filter's counters and gauge: `http.<stat_prefix>.fault.*`.
struct FaultStats: Sendable {
    let abortsInjected, delaysInjected, faultsOverflow, responseRateLimitInjected: Int
    let statPrefix: String
    let dynamic: DynamicStats

    init(statPrefix: String, registry r: StatsRegistry, active: ManagedAtomic<Int>) {
        let label = ("envoy_http_conn_manager_prefix", statPrefix)
        self.statPrefix = statPrefix
        dynamic = r.dynamic
        func reg(_ s: String) -> Int {
            r.registerOnce("http.\(statPrefix).fault.\(s)", .counter, family: "http.fault.\(s)", labels: [label])
        }
        abortsInjected = reg("aborts_injected")
        delaysInjected = reg("delays_injected")
        faultsOverflow = reg("faults_overflow")
        responseRateLimitInjected = reg("response_rl_injected")
        r.registerComputed("http.\(statPrefix).fault.active_faults", family: "http.fault.active_faults",
                           labels: [label]) { active.load(ordering: .relaxed) }
    }
}

extension FaultConfig: HTTPFilterConfig {
    func makeFactory(_ context: HTTPFilterBuildContext) -> any HTTPFilterFactory {
        let active = ManagedAtomic(0)
        return FaultFilter(name: context.filterName, config: self,
                           stats: FaultStats(statPrefix: context.statPrefix, registry: context.registry, active: active),
                           active: active)
    }
}
