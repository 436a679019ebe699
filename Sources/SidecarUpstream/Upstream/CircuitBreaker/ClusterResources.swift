import Atomics
import SidecarCore

/// One cluster's resource counts and limits for both priorities: Envoy's `ResourceManagerImpl`
/// (source/common/upstream/resource_manager_impl.h), one per priority. Like Envoy's, it is cluster-wide,
/// shared by every worker thread, so its counts are atomics; nothing here takes a lock.
///
/// Where Envoy checks `canCreate()` and then calls `inc()` (and so "may temporarily go above the supplied
/// maximums", as its header says), `tryAcquire` takes the unit with a compare-and-swap, so a limit is never
/// passed through a race. `acquire` is Envoy's plain `inc()`, for the one place Envoy goes over on purpose:
/// a host with no connection still gets one even when `max_connections` is reached.
///
/// Which counter an overflow increments is the caller's business, and Envoy 1.40's choice per resource is:
/// `max_connections` → `upstream_cx_overflow` (the request then waits for a connection instead of failing);
/// `max_pending_requests` → `upstream_rq_pending_overflow`; `max_retries` / `retry_budget` →
/// `upstream_rq_retry_overflow`; `max_requests` → `upstream_rq_active_overflow`. That last one changed in
/// Envoy 1.38 (envoyproxy/envoy#44164): `ConnPoolImplBase::attachStreamToClient` used to count a
/// `max_requests` overflow as `upstream_rq_pending_overflow`, even on HTTP/1 clusters; now it counts
/// `upstream_rq_active_overflow`, and `upstream_rq_pending_overflow` only while the runtime guard
/// `envoy.reloadable_features.skip_pending_overflow_count_on_active_rq` is turned off. On Envoy 1.40 with
/// defaults, three concurrent requests to an HTTP/1 cluster with `max_requests: 1` gave
/// `upstream_rq_active_overflow: 2` and `upstream_rq_pending_overflow: 0`.
package final class ClusterResources: Sendable {
    package typealias Priority = CircuitBreakerThresholds.Priority

    package enum Resource: Int, CaseIterable, Sendable {
        case connections, pendingRequests, requests, retries
    }

    /// Indexed by `priorityIndex`.
    private let thresholds: [CircuitBreakerThresholds]
    /// The counts, indexed by `slot(_:_:)`: one allocation for all of them (a cluster has this set whether or not
    /// it sees traffic; a thousand clusters, a thousand sets). Never reassigned; every access is atomic.
    nonisolated(unsafe) private let storage: UnsafeMutablePointer<UnsafeAtomic<Int>.Storage>
    private var counts: UnsafeAtomicCounts { UnsafeAtomicCounts(base: storage) }

    private static let slotCount = Priority.allCases.count * Resource.allCases.count

    /// One entry per priority, DEFAULT first (`Cluster.circuitBreakers`). A missing priority gets Envoy's
    /// defaults; when a priority appears twice the first entry wins, as in Envoy.
    package init(thresholds: [CircuitBreakerThresholds]) {
        let resolved = Priority.allCases.map { p in
            thresholds.first { $0.priority == p } ?? CircuitBreakerThresholds(priority: p)
        }
        // Envoy's defaults: the array every such cluster shares.
        self.thresholds = resolved == CircuitBreakerThresholds.defaults ? CircuitBreakerThresholds.defaults : resolved
        storage = .allocate(capacity: Self.slotCount)
        storage.initialize(repeating: UnsafeAtomic<Int>.Storage(0), count: Self.slotCount)
    }

    deinit {
        storage.deinitialize(count: Self.slotCount)
        storage.deallocate()
    }

    /// A view of the counts as atomics.
    private struct UnsafeAtomicCounts {
        let base: UnsafeMutablePointer<UnsafeAtomic<Int>.Storage>
        subscript(_ i: Int) -> UnsafeAtomic<Int> { UnsafeAtomic(at: base + i) }
    }

    /// The limits configured for one priority.
    package func thresholds(_ p: Priority) -> CircuitBreakerThresholds { thresholds[Self.priorityIndex(p)] }

    /// Takes one unit if the count is under the limit; false means overflow. For retries the limit is
    /// `max_retries`, or with a `retry_budget` a share of the requests in flight (see `limit`).
    package func tryAcquire(_ r: Resource, _ p: Priority) -> Bool {
        let counter = counts[Self.slot(r, p)]
        var current = counter.load(ordering: .relaxed)
        while true {
            guard current < limit(r, p) else { return false }
            let (exchanged, original) = counter.weakCompareExchange(
                expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    /// Takes one unit whatever the limit: Envoy's `inc()` where it deliberately goes over (the first
    /// connection of a host when `max_connections` is reached).
    package func acquire(_ r: Resource, _ p: Priority) {
        counts[Self.slot(r, p)].wrappingIncrement(ordering: .relaxed)
    }

    /// Gives back one unit taken with `tryAcquire` or `acquire`.
    package func release(_ r: Resource, _ p: Priority) {
        let before = counts[Self.slot(r, p)].loadThenWrappingDecrement(ordering: .relaxed)
        assert(before > 0, "released more \(r) than were taken")
    }

    package func count(_ r: Resource, _ p: Priority) -> Int {
        counts[Self.slot(r, p)].load(ordering: .relaxed)
    }

    /// The current limit. With a `retry_budget` the retry limit follows the load, as Envoy's
    /// `RetryBudgetImpl::max()`: `budget_percent` of the active plus pending requests of this priority,
    /// truncated, and never below `min_retry_concurrency`. The budget replaces `max_retries`.
    package func limit(_ r: Resource, _ p: Priority) -> Int {
        let t = thresholds[Self.priorityIndex(p)]
        switch r {
        case .connections: return t.maxConnections
        case .pendingRequests: return t.maxPendingRequests
        case .requests: return t.maxRequests
        case .retries:
            guard let budget = t.retryBudget else { return t.maxRetries }
            let inFlight = count(.requests, p) + count(.pendingRequests, p)
            // `std::max<uint64_t>(budget_percent / 100.0 * current_active, min_retry_concurrency)`.
            let share = budget.budgetPercent / 100.0 * Double(inFlight)
            let truncated = share.isFinite && share > 0 ? Int(Swift.min(share, Double(Int.max / 2))) : 0
            return Swift.max(truncated, budget.minRetryConcurrency)
        }
    }

    /// The `*_open` gauge: 1 when the breaker is at its limit and admits nothing more.
    package func isOpen(_ r: Resource, _ p: Priority) -> Bool { count(r, p) >= limit(r, p) }

    /// The `remaining_*` gauge: units left before the breaker opens. With a retry budget Envoy reports 0 for
    /// retries ("the stats tracking remaining retries do not make sense", `clearRemainingGauge`).
    package func remaining(_ r: Resource, _ p: Priority) -> Int {
        if r == .retries && thresholds[Self.priorityIndex(p)].retryBudget != nil { return 0 }
        return Swift.max(limit(r, p) - count(r, p), 0)
    }

    private static func priorityIndex(_ p: Priority) -> Int {
        switch p {
        case .DEFAULT: 0
        case .HIGH: 1
        }
    }

    private static func slot(_ r: Resource, _ p: Priority) -> Int {
        priorityIndex(p) * Resource.allCases.count + r.rawValue
    }
}
