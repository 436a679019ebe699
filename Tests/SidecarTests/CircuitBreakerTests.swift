import Dispatch
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// Cluster-wide circuit breakers (`ClusterResources`) and their `circuit_breakers.*` gauges.
@Suite struct CircuitBreakerTests {
    static func thresholds(
        _ p: CircuitBreakerThresholds.Priority, connections: Int = 1024, pending: Int = 1024, requests: Int = 1024,
        retries: Int = 3, budget: CircuitBreakerThresholds.RetryBudget? = nil, trackRemaining: Bool = false
    ) -> CircuitBreakerThresholds {
        var t = CircuitBreakerThresholds(priority: p)
        t.maxConnections = connections
        t.maxPendingRequests = pending
        t.maxRequests = requests
        t.maxRetries = retries
        t.retryBudget = budget
        t.trackRemaining = trackRemaining
        return t
    }

    /// Takes units until the breaker refuses; returns how many it admitted.
    static func acquireAll(
        _ r: ClusterResources, _ resource: ClusterResources.Resource, _ p: CircuitBreakerThresholds.Priority
    ) -> Int {
        var n = 0
        while n < 10_000 && r.tryAcquire(resource, p) { n += 1 }
        return n
    }

    @Test func eachPriorityHasItsOwnLimitsAndCounts() {
        let r = ClusterResources(thresholds: [
            Self.thresholds(.DEFAULT, connections: 4, pending: 3, requests: 2, retries: 1),
            Self.thresholds(.HIGH, connections: 1, pending: 2, requests: 3, retries: 4),
        ])
        let expected: [(ClusterResources.Resource, Int, Int)] = [
            (.connections, 4, 1), (.pendingRequests, 3, 2), (.requests, 2, 3), (.retries, 1, 4),
        ]
        for (resource, atDefault, atHigh) in expected {
            #expect(Self.acquireAll(r, resource, .DEFAULT) == atDefault, "\(resource) default")
            #expect(r.count(resource, .HIGH) == 0, "\(resource): default units are not high ones")
            #expect(Self.acquireAll(r, resource, .HIGH) == atHigh, "\(resource) high")
            #expect(r.count(resource, .DEFAULT) == atDefault)
            #expect(r.isOpen(resource, .DEFAULT) && r.isOpen(resource, .HIGH))
        }
    }

    @Test func releaseGivesTheUnitBack() {
        let r = ClusterResources(thresholds: [Self.thresholds(.DEFAULT, requests: 2)])
        #expect(r.tryAcquire(.requests, .DEFAULT))
        #expect(r.tryAcquire(.requests, .DEFAULT))
        #expect(!r.tryAcquire(.requests, .DEFAULT))
        r.release(.requests, .DEFAULT)
        #expect(r.count(.requests, .DEFAULT) == 1)
        #expect(!r.isOpen(.requests, .DEFAULT))
        #expect(r.tryAcquire(.requests, .DEFAULT))
        #expect(!r.tryAcquire(.requests, .DEFAULT))
    }

    @Test func acquireGoesOverTheLimitOnPurpose() {
        let r = ClusterResources(thresholds: [Self.thresholds(.DEFAULT, connections: 1)])
        #expect(r.tryAcquire(.connections, .DEFAULT))
        r.acquire(.connections, .DEFAULT)
        #expect(r.count(.connections, .DEFAULT) == 2)
        #expect(r.remaining(.connections, .DEFAULT) == 0)
        r.release(.connections, .DEFAULT)
        r.release(.connections, .DEFAULT)
        #expect(r.tryAcquire(.connections, .DEFAULT))
    }

    @Test func missingPriorityGetsEnvoysDefaultsAndTheFirstDuplicateWins() {
        let r = ClusterResources(thresholds: [
            Self.thresholds(.DEFAULT, requests: 5), Self.thresholds(.DEFAULT, requests: 9),
        ])
        #expect(r.limit(.requests, .DEFAULT) == 5)
        #expect(r.limit(.connections, .HIGH) == 1024)
        #expect(r.limit(.pendingRequests, .HIGH) == 1024)
        #expect(r.limit(.requests, .HIGH) == 1024)
        #expect(r.limit(.retries, .HIGH) == 3)
    }

    /// `RetryBudgetImpl::max()`: `budget_percent` of active plus pending requests, truncated, at least
    /// `min_retry_concurrency`; it replaces `max_retries`.
    @Test func retryBudgetIsAShareOfRequestsInFlightWithAFloor() {
        let budget = CircuitBreakerThresholds.RetryBudget(budgetPercent: 20, minRetryConcurrency: 3)
        let r = ClusterResources(thresholds: [Self.thresholds(.DEFAULT, retries: 1, budget: budget)])
        func load(requests: Int, pending: Int) {
            while r.count(.requests, .DEFAULT) > requests { r.release(.requests, .DEFAULT) }
            while r.count(.requests, .DEFAULT) < requests { r.acquire(.requests, .DEFAULT) }
            while r.count(.pendingRequests, .DEFAULT) > pending { r.release(.pendingRequests, .DEFAULT) }
            while r.count(.pendingRequests, .DEFAULT) < pending { r.acquire(.pendingRequests, .DEFAULT) }
        }
        #expect(r.limit(.retries, .DEFAULT) == 3, "idle: the floor, not max_retries 1")
        load(requests: 10, pending: 0)
        #expect(r.limit(.retries, .DEFAULT) == 3, "20 % of 10 is 2, below the floor of 3")
        load(requests: 7, pending: 3)
        #expect(r.limit(.retries, .DEFAULT) == 3, "pending requests count too")
        load(requests: 20, pending: 6)
        #expect(r.limit(.retries, .DEFAULT) == 5, "20 % of 26 is 5.2, truncated")
        #expect(Self.acquireAll(r, .retries, .DEFAULT) == 5)
        #expect(r.remaining(.retries, .DEFAULT) == 0, "Envoy reports no remaining retries under a budget")
        load(requests: 40, pending: 0)
        #expect(r.tryAcquire(.retries, .DEFAULT), "more load, more retries")

        let half = CircuitBreakerThresholds.RetryBudget(budgetPercent: 50, minRetryConcurrency: 0)
        let other = ClusterResources(thresholds: [Self.thresholds(.DEFAULT, budget: half)])
        #expect(other.limit(.retries, .DEFAULT) == 0)
        #expect(!other.tryAcquire(.retries, .DEFAULT))
        other.acquire(.requests, .DEFAULT)
        other.acquire(.requests, .DEFAULT)
        #expect(other.tryAcquire(.retries, .DEFAULT))
    }

    @Test func concurrentWorkersNeverTakeMoreThanTheLimit() {
        let r = ClusterResources(thresholds: [Self.thresholds(.DEFAULT, requests: 100)])
        let taken = ManagedCounter()
        DispatchQueue.concurrentPerform(iterations: 2_000) { _ in
            if r.tryAcquire(.requests, .DEFAULT) { taken.increment() }
        }
        #expect(taken.value == 100)
        #expect(r.count(.requests, .DEFAULT) == 100)
        DispatchQueue.concurrentPerform(iterations: 100) { _ in r.release(.requests, .DEFAULT) }
        #expect(r.count(.requests, .DEFAULT) == 0)
    }

    // MARK: Gauges

    static func render(_ registry: StatsRegistry, filter: String? = nil) throws -> StatsView {
        StatsView(
            registry: registry, values: Array(repeating: 0, count: registry.count),
            filter: try filter.map { try CompiledRegex($0) }, usedOnly: false)
    }

    @Test func gaugesAreReadFromTheCountersWhenStatsAreShown() throws {
        let registry = StatsRegistry()
        let r = ClusterResources(thresholds: [
            Self.thresholds(.DEFAULT, requests: 2, trackRemaining: true), Self.thresholds(.HIGH),
        ])
        _ = CircuitBreakerStats(cluster: "c1", resources: r, registry: registry)
        let before = try Self.render(registry).text()
        for line in [
            "cluster.c1.circuit_breakers.default.cx_open: 0", "cluster.c1.circuit_breakers.default.cx_pool_open: 0",
            "cluster.c1.circuit_breakers.default.rq_open: 0", "cluster.c1.circuit_breakers.default.rq_pending_open: 0",
            "cluster.c1.circuit_breakers.default.rq_retry_open: 0",
            "cluster.c1.circuit_breakers.default.remaining_rq: 2",
            "cluster.c1.circuit_breakers.default.remaining_cx: 1024",
            "cluster.c1.circuit_breakers.default.remaining_pending: 1024",
            "cluster.c1.circuit_breakers.default.remaining_retries: 3",
            "cluster.c1.circuit_breakers.high.rq_open: 0", "cluster.c1.circuit_breakers.high.cx_open: 0",
        ] {
            #expect(before.contains(line + "\n"), "\(line)")
        }
        #expect(!before.contains("circuit_breakers.high.remaining"), "track_remaining is per priority")
        #expect(!before.contains("remaining_cx_pools"))

        #expect(r.tryAcquire(.requests, .DEFAULT))
        #expect(r.tryAcquire(.requests, .DEFAULT))
        let after = try Self.render(registry).text()
        #expect(after.contains("cluster.c1.circuit_breakers.default.rq_open: 1\n"))
        #expect(after.contains("cluster.c1.circuit_breakers.default.remaining_rq: 0\n"))
        #expect(after.contains("cluster.c1.circuit_breakers.high.rq_open: 0\n"))

        let json = try Self.render(registry, filter: "default\\.rq_open").json()
        #expect(json == "{\"stats\":[{\"name\":\"cluster.c1.circuit_breakers.default.rq_open\",\"value\":1}]}\n")

        let prometheus = try Self.render(registry, filter: "rq_open").prometheus()
        #expect(
            prometheus == """
                # HELP envoy_cluster_circuit_breakers_default_rq_open Envoy stat cluster.circuit_breakers.default.rq_open
                # TYPE envoy_cluster_circuit_breakers_default_rq_open gauge
                envoy_cluster_circuit_breakers_default_rq_open{envoy_cluster_name="c1"} 1
                # HELP envoy_cluster_circuit_breakers_high_rq_open Envoy stat cluster.circuit_breakers.high.rq_open
                # TYPE envoy_cluster_circuit_breakers_high_rq_open gauge
                envoy_cluster_circuit_breakers_high_rq_open{envoy_cluster_name="c1"} 0

                """)
    }

    @Test func everyClusterGetsItsBreakersAndEnvoysResilienceCounters() throws {
        var c = Cluster(
            name: "svc", type: .STATIC, connectTimeout: .seconds(1), lbPolicy: .ROUND_ROBIN, endpoints: [],
            dnsRefreshRate: .seconds(5), dnsLookupFamily: .AUTO, perConnectionBufferLimitBytes: 1 << 20)
        c.circuitBreakers[0].maxRetries = 0
        let registry = StatsRegistry()
        let entry = try #require(ClusterManager(registry: registry).infos(for: [c]).first)
        #expect(!entry.resources.tryAcquire(.retries, .DEFAULT))

        let text = try Self.render(registry, filter: "^cluster\\.svc\\.").text()
        for counter in [
            "upstream_cx_overflow", "upstream_rq_pending_overflow", "upstream_rq_active_overflow",
            "upstream_rq_retry_overflow", "upstream_rq_retry", "upstream_rq_retry_success",
            "upstream_rq_retry_limit_exceeded", "upstream_rq_retry_backoff_exponential", "upstream_rq_per_try_timeout",
            "upstream_rq_per_try_idle_timeout", "upstream_rq_rx_reset", "upstream_rq_tx_reset",
            "upstream_cx_max_duration_reached", "upstream_cx_idle_timeout", "lb_healthy_panic",
            "upstream_rq_max_duration_reached",
        ] {
            #expect(text.contains("cluster.svc.\(counter): 0\n"), "\(counter)")
        }
        #expect(text.contains("cluster.svc.circuit_breakers.default.rq_retry_open: 1\n"), "max_retries 0 is open")
        #expect(text.contains("cluster.svc.circuit_breakers.high.rq_retry_open: 0\n"))
    }
}

/// A thread-safe tally for the concurrency test.
private final class ManagedCounter: @unchecked Sendable {
    private let queue = DispatchQueue(label: "counter")
    private var n = 0
    func increment() { queue.sync { n += 1 } }
    var value: Int { queue.sync { n } }
}
