import NIOConcurrencyHelpers
import NIOCore
import SidecarCore

/// Runs the active health checks of one cluster on one event loop (Envoy runs them on its main thread,
/// `HealthCheckerImplBase` in source/extensions/health_checkers/common/health_checker_base_impl.cc): one
/// session per host, each connecting with a `ClientBootstrap` on this loop, sending the HTTP request or TCP
/// payload, judging the answer within `timeout`, and scheduling its next check. Health transitions are
/// reported to `onTransition` on this loop; the owner spreads them to the workers' load balancers.
///
/// Every mutable property is touched only on `eventLoop`; the public methods hop there when called from
/// elsewhere. The per-host view other threads read (admin) is published under a lock, written only when a
/// host's flags change.
package final class ActiveHealthChecker: @unchecked Sendable {
    /// One host's flags as Envoy's admin `/clusters` names them.
    package struct HostFlags: Equatable, Sendable {
        /// `failed_active_hc`: not passing active checks (also while its first check is pending).
        package var failedActiveHC = true
        /// `pending_active_hc`: no check result yet.
        package var pendingActiveHC = true
        /// `degraded_active_hc`: the last passing answer carried `x-envoy-degraded`.
        package var degradedActiveHC = false
        /// `excluded_via_immediate_hc_fail`: the host said `x-envoy-immediate-health-check-fail`.
        package var excludedViaImmediateHCFail = false

        package init() {}

        package init(_ state: HostHealthCheckState) {
            failedActiveHC = !state.isHealthy
            pendingActiveHC = state.pendingFirstCheck
            degradedActiveHC = state.isDegraded
            excludedViaImmediateHCFail = state.excludedViaImmediateFailure
        }
    }

    package let eventLoop: EventLoop
    package let clusterName: String
    package let config: HealthCheckConfig
    private let stats: HealthCheckStats
    private let workerStats: WorkerStats
    private let clusterHasTraffic: () -> Bool
    private let onTransition: (_ hostIndex: Int, _ healthy: Bool) -> Void

    private var sessions: [HealthCheckSession] = []
    private var running = false
    private var random = FastRandom()
    private let published: NIOLockedValueBox<[HostFlags]>

    /// - Parameters:
    ///   - workerStats: the stats of `eventLoop`'s worker, which this checker counts into.
    ///   - clusterHasTraffic: whether the cluster has carried traffic yet; called on `eventLoop`.
    ///   - onTransition: a host became healthy or unhealthy (and once per host when its first check ends,
    ///     as it leaves "pending"); called on `eventLoop`.
    package init(
        eventLoop: EventLoop, clusterName: String, config: HealthCheckConfig, hosts: [UpstreamHost],
        stats: HealthCheckStats, workerStats: WorkerStats, clusterHasTraffic: @escaping () -> Bool,
        onTransition: @escaping (_ hostIndex: Int, _ healthy: Bool) -> Void
    ) {
        self.eventLoop = eventLoop
        self.clusterName = clusterName
        self.config = config
        self.stats = stats
        self.workerStats = workerStats
        self.clusterHasTraffic = clusterHasTraffic
        self.onTransition = onTransition
        self.published = NIOLockedValueBox(Array(repeating: HostFlags(), count: hosts.count))
        self.sessions = hosts.enumerated().map { makeSession($0.element, index: $0.offset) }
    }

    /// Starts checking every host: at once, or after a random `initial_jitter`.
    package func start() {
        onLoop { checker in
            guard !checker.running else { return }
            checker.running = true
            for session in checker.sessions { checker.scheduleFirstCheck(session) }
        }
    }

    /// Stops every check and closes the checks' connections. Host states are kept, so `healthy` still
    /// shows the last verdicts.
    package func stop() {
        onLoop { checker in
            checker.running = false
            for session in checker.sessions { session.stop() }
        }
    }

    /// A DNS refresh changed the hosts. Hosts whose address stays keep their state, connection and timers;
    /// new hosts start unhealthy and pending; removed hosts' checks end and leave the gauges (Envoy's
    /// `onClusterMemberUpdate`, and `onDeferredDeleteBase` for the gauges).
    package func replaceHosts(_ hosts: [UpstreamHost]) {
        onLoop { checker in checker.replaceHostsOnLoop(hosts) }
    }

    /// A response to routed traffic carried `x-envoy-immediate-health-check-fail`: the host is unhealthy at
    /// once and excluded until it passes a check again (Envoy's `HealthCheckHostMonitorImpl::setUnhealthy`,
    /// a `PASSIVE` failure; the next active check is not moved). May be called from any worker.
    package func reportImmediateHealthCheckFailure(address: SocketAddress) {
        onLoop { checker in
            guard let session = checker.sessions.first(where: { $0.host.address == address }) else { return }
            checker.record(session, .failed(.passive, immediateFailHeader: true))
        }
    }

    /// The current per-host view, in host order: `true` where the host passes active checks.
    package var healthy: [Bool] { published.withLockedValue { $0.map { !$0.failedActiveHC } } }

    /// The host a transition's index names; on `eventLoop` only.
    package func host(at index: Int) -> UpstreamHost? {
        index < sessions.count ? sessions[index].host : nil
    }

    /// The current per-host flags, in host order (admin `/clusters` `health_flags`).
    package var hostFlags: [HostFlags] { published.withLockedValue { $0 } }

    // MARK: - On the loop

    private func onLoop(_ body: @escaping @Sendable (ActiveHealthChecker) -> Void) {
        if eventLoop.inEventLoop {
            body(self)
        } else {
            eventLoop.execute { body(self) }
        }
    }

    private func makeSession(_ host: UpstreamHost, index: Int) -> HealthCheckSession {
        let session = HealthCheckSession(
            host: host, index: index, eventLoop: eventLoop, config: config, clusterName: clusterName)
        session.checker = self
        return session
    }

    private func scheduleFirstCheck(_ session: HealthCheckSession) {
        let delay = HealthCheckSchedule.next(
            config: config, hostHealthy: false, clusterHasTraffic: clusterHasTraffic(), first: true,
            random: &random)
        if delay == 0 {
            runCheck(session)
        } else {
            session.schedule(in: delay) { [weak self] in self?.runCheck(session) }
        }
    }

    private func runCheck(_ session: HealthCheckSession) {
        guard running, session.checker === self else { return }
        workerStats.inc(stats.attempt)
        session.probe()
    }

    /// A session's check ended: count it, move the host's state, schedule the next check.
    package func checkFinished(_ session: HealthCheckSession, _ outcome: HealthCheckSession.Outcome) {
        eventLoop.assertInEventLoop()
        guard running, session.checker === self else { return }
        let passed: Bool
        switch outcome {
        case .passed: passed = true
        case .failed: passed = false
        }
        let delay = HealthCheckSchedule.next(
            config: config, hostHealthy: passed, clusterHasTraffic: clusterHasTraffic(), first: false,
            random: &random)
        session.schedule(in: delay) { [weak self] in self?.runCheck(session) }
        record(session, outcome)
    }

    /// Applies one result to a host: stats, gauges, published flags, and the transition callback last, so
    /// the callback may call back into the checker.
    private func record(_ session: HealthCheckSession, _ outcome: HealthCheckSession.Outcome) {
        let before = session.state
        let transition: HostHealthCheckState.Transition?
        switch outcome {
        case .passed(let degraded):
            workerStats.inc(stats.success)
            transition = session.state.checkSucceeded(degraded: degraded)
        case .failed(let type, let immediateFailHeader):
            // `setUnhealthy`: every failure counts in `failure`; network ones also in `network_failure`,
            // passive ones in `passive_failure`.
            workerStats.inc(stats.failure)
            switch type {
            case .network, .networkTimeout: workerStats.inc(stats.networkFailure)
            case .passive: workerStats.inc(stats.passiveFailure)
            case .active: break
            }
            transition = session.state.checkFailed(type, immediateFailHeader: immediateFailHeader)
        }
        let after = session.state
        if before.isHealthy != after.isHealthy { workerStats.add(stats.healthy, after.isHealthy ? 1 : -1) }
        if before.isDegraded != after.isDegraded { workerStats.add(stats.degraded, after.isDegraded ? 1 : -1) }
        publish()
        if let transition { onTransition(session.index, transition == .becameHealthy) }
    }

    private func replaceHostsOnLoop(_ hosts: [UpstreamHost]) {
        var old = sessions
        var next: [HealthCheckSession] = []
        next.reserveCapacity(hosts.count)
        for (i, host) in hosts.enumerated() {
            if let j = old.firstIndex(where: { $0.host.address == host.address }) {
                let kept = old.remove(at: j)
                kept.host = host
                kept.index = i
                next.append(kept)
            } else {
                let fresh = makeSession(host, index: i)
                next.append(fresh)
            }
        }
        for gone in old {
            gone.checker = nil
            gone.stop()
            if gone.state.isHealthy { workerStats.dec(stats.healthy) }
            if gone.state.isDegraded { workerStats.dec(stats.degraded) }
        }
        let added = next.filter { s in !sessions.contains { $0 === s } }
        sessions = next
        publish()
        if running {
            for session in added { scheduleFirstCheck(session) }
        }
    }

    private func publish() {
        let flags = sessions.map { HostFlags($0.state) }
        published.withLockedValue { $0 = flags }
    }
}
