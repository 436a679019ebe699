import NIOCore
import SidecarCore

/// One worker's view of one cluster (Envoy's thread-local cluster): its hosts, which of them are usable,
/// the load balancer over them and the outcomes that feed outlier detection. Owned by the worker's event loop,
/// so nothing in it is locked.
///
/// A host is usable when it passes active health checks (pushed here by the cluster's health checker) and is
/// not ejected by this worker's outlier detector. The balancer is rebuilt whenever that set changes.
///
/// It lives as long as config snapshots keep its `ClusterInfo`: a new snapshot with the same cluster keeps this
/// object, its hosts and its pool; one without it `remove`s it, and streams of older snapshots finish on it.
package final class ThreadLocalCluster {
    package let info: ClusterInfo
    /// This worker's upstream connections to the cluster's hosts.
    package let pool: ConnectionPool
    /// No current snapshot has the cluster any more: periodic work stops, the pool drains.
    package private(set) var removed = false
    package private(set) var hosts: [UpstreamHost]
    /// Active health-check verdicts (true when the cluster has no health checks).
    package private(set) var passesHealthCheck: [Bool]
    package private(set) var outlier: OutlierDetector?
    private var balancer: LoadBalancer
    /// In-flight requests per host (LEAST_REQUEST).
    package private(set) var activeRequests: [Int]
    private let workerIndex: Int
    private let stats: WorkerStats
    private let outlierStats: OutlierDetectionStats?
    /// Whether this worker publishes the cluster's membership gauges (only one worker does).
    private let publishesMembership: Bool
    /// Hosts usable now (this worker's `membership_healthy`).
    package private(set) var healthyCount: Int

    package init(info: ClusterInfo, hosts: [UpstreamHost], eventLoop: EventLoop, workerIndex: Int, stats: WorkerStats) {
        self.info = info
        self.pool = ConnectionPool(eventLoop: eventLoop, stats: stats, cluster: info)
        self.hosts = hosts
        self.workerIndex = workerIndex
        self.stats = stats
        self.outlierStats = info.outlierStats
        self.publishesMembership = workerIndex == 0
        // Envoy: hosts under active health checking start as failing until their first check passes.
        self.passesHealthCheck = Array(repeating: info.config.healthChecks.isEmpty, count: hosts.count)
        self.outlier = info.config.outlierDetection.map { OutlierDetector(config: $0, hostCount: hosts.count) }
        self.activeRequests = Array(repeating: 0, count: hosts.count)
        self.hostCounters = Array(repeating: HostCounters(), count: hosts.count)
        self.healthyCount = 0
        self.balancer = LoadBalancer(config: info.config.loadBalancing, hosts: hosts,
                                     healthy: Array(repeating: true, count: hosts.count), workerIndex: workerIndex)
        if publishesMembership { stats.add(info.stats.membershipTotal, hosts.count) }
        rebuild()
    }

    /// Usable: healthy by the load assignment's `health_status`, passes health checks and is not ejected.
    package func isHealthy(_ host: Int) -> Bool {
        hosts[host].healthStatus.isHealthy && passesHealthCheck[host] && !(outlier?.isEjected(host) ?? false)
    }

    private func rebuild() {
        let healthy = (0..<hosts.count).map(isHealthy)
        let count = healthy.reduce(0) { $0 + ($1 ? 1 : 0) }
        if publishesMembership && !removed { stats.add(info.stats.membershipHealthy, count - healthyCount) }
        healthyCount = count
        balancer = LoadBalancer(config: info.config.loadBalancing, hosts: hosts, healthy: healthy, workerIndex: workerIndex)
    }

    /// Picks a host for a request. `reject` is the retry host predicate (hosts already tried).
    package func choose(hash: UInt64?, random: inout FastRandom, maxAttempts: Int = 1, reject: (Int) -> Bool = { _ in false }) -> Int? {
        guard let picked = balancer.choose(hash: hash, activeRequests: activeRequests, random: &random,
                                           maxAttempts: maxAttempts, reject: reject) else { return nil }
        if picked.panic { stats.inc(info.stats.lbHealthyPanic) }
        return picked.host
    }

    /// Counts host-list replacements (EDS, DNS): a host index taken before one may name another host after it.
    package private(set) var hostsGeneration = 0

    /// Where `host`, chosen at `index` when the host list was `generation`, is now: the same index while the list
    /// is the same, else wherever the host went (nil: it was removed). Streams give their host back through this.
    package func currentIndex(_ index: Int, generation: Int, host: UpstreamHost) -> Int? {
        generation == hostsGeneration ? index : hosts.firstIndex(of: host)
    }

    package func requestStarted(_ host: Int) {
        activeRequests[host] += 1
        hostCounters[host].rqTotal += 1
    }

    package func requestEnded(_ host: Int) { activeRequests[host] -= 1 }

    /// Per-host request outcomes for `/clusters` (Envoy's rq_success / rq_error / rq_timeout).
    package struct HostCounters {
        package var rqTotal = 0
        package var rqSuccess = 0
        package var rqError = 0
        package var rqTimeout = 0
    }

    package private(set) var hostCounters: [HostCounters]

    /// An attempt on `host` ended: feeds outlier detection (ejections take effect at once).
    package func record(_ host: Int, _ result: OutlierDetector.Result, random: inout FastRandom) {
        guard host < hosts.count else { return }
        switch result {
        case .httpStatus(let code) where code < 500: hostCounters[host].rqSuccess += 1
        case .timeout: hostCounters[host].rqTimeout += 1; hostCounters[host].rqError += 1
        case .localOriginSuccess, .localOriginSuccessFinal: break
        case .httpStatus, .connectFailed, .reset: hostCounters[host].rqError += 1
        }
        // A removed cluster's streams still finish on it, but it no longer ejects (nor moves the gauges it left).
        guard outlier != nil, !removed else { return }
        let events = outlier!.record(host: host, result, now: NIODeadline.now().uptimeNanoseconds.asInt64, random: &random)
        apply(events)
    }

    /// Every `outlier_detection.interval`.
    package func outlierIntervalElapsed(random: inout FastRandom) {
        guard outlier != nil else { return }
        apply(outlier!.intervalElapsed(now: NIODeadline.now().uptimeNanoseconds.asInt64, random: &random))
    }

    private func apply(_ events: [OutlierDetector.Event]) {
        guard !events.isEmpty else { return }
        var changed = false
        for e in events {
            outlierStats?.apply(e, to: stats)
            switch e.kind {
            case .unejected: changed = true
            case .overflow: break
            case .consecutive5xx, .consecutiveGatewayFailure, .consecutiveLocalOriginFailure, .successRate,
                 .failurePercentage, .localOriginSuccessRate, .localOriginFailurePercentage:
                if e.enforced { changed = true }
            }
            if e.enforced || e.kind == .unejected {
                Log.info(e.kind == .unejected ? "host returned from outlier ejection" : "host ejected by outlier detection",
                         [("cluster", info.config.name), ("host", hosts[e.host].description), ("reason", "\(e.kind)")])
            }
        }
        if changed { rebuild() }
    }

    /// The cluster's health checker changed its verdict on a host.
    package func setHealthCheck(address: SocketAddress, passes: Bool) {
        guard let host = hosts.firstIndex(where: { $0.address == address }), passesHealthCheck[host] != passes else {
            return
        }
        passesHealthCheck[host] = passes
        if passes, outlier != nil {
            apply(outlier!.activeHealthCheckPassed(host: host, now: NIODeadline.now().uptimeNanoseconds.asInt64))
        }
        rebuild()
    }

    /// A DNS refresh replaced the host list. What is known about hosts that stay is kept; new hosts under
    /// health checking wait for their first check.
    package func replaceHosts(_ newHosts: [UpstreamHost]) {
        if publishesMembership { stats.add(info.stats.membershipTotal, newHosts.count - hosts.count) }
        var verdicts = Array(repeating: info.config.healthChecks.isEmpty, count: newHosts.count)
        var active = Array(repeating: 0, count: newHosts.count)
        var counters = Array(repeating: HostCounters(), count: newHosts.count)
        for (i, h) in newHosts.enumerated() {
            guard let old = hosts.firstIndex(of: h) else { continue }
            verdicts[i] = passesHealthCheck[old]
            active[i] = activeRequests[old]
            counters[i] = hostCounters[old]
        }
        hosts = newHosts
        hostsGeneration &+= 1
        passesHealthCheck = verdicts
        activeRequests = active
        hostCounters = counters
        if let o = outlier, let os = outlierStats { stats.add(os.ejectionsActive, -o.ejectedCount) }
        outlier?.reset(hostCount: newHosts.count)
        rebuild()
    }

    /// The last snapshot that had the cluster was replaced: it leaves this worker's membership gauges, and its
    /// pool closes idle connections now and busy ones when their requests end.
    package func remove() {
        guard !removed else { return }
        removed = true
        if publishesMembership {
            stats.add(info.stats.membershipTotal, -hosts.count)
            stats.add(info.stats.membershipHealthy, -healthyCount)
        }
        if let o = outlier, let os = outlierStats { stats.add(os.ejectionsActive, -o.ejectedCount) }
        pool.drain()
    }

    /// `/clusters` health flags of a host, in Envoy's spelling.
    package func healthFlags(_ host: Int) -> String {
        var flags: [String] = []
        if !passesHealthCheck[host] { flags.append("/failed_active_hc") }
        if !hosts[host].healthStatus.isHealthy { flags.append("/failed_eds_health") }
        if outlier?.isEjected(host) ?? false { flags.append("/failed_outlier_check") }
        return flags.isEmpty ? "healthy" : flags.joined()
    }
}

@available(*, unavailable) extension ThreadLocalCluster: Sendable {}

extension UInt64 {
    package var asInt64: Int64 { Int64(truncatingIfNeeded: self) }
}
