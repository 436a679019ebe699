import SidecarCore

/// Passive health checking of one cluster's hosts, as Envoy's `DetectorImpl`
/// (source/common/upstream/outlier_detection_impl.cc, Envoy 1.40) does it, kept as a plain value: the owner
/// feeds it request results, interval ticks and active health-check passes, with the time and the chance
/// injected, and applies the events it returns (load balancing, stats).
///
/// One host's life:
///
///                     consecutive error (at once, in `record`) or success rate /
///                     failure percentage (in `intervalElapsed`), under max_ejection_percent,
///                     and the enforcing_* chance says yes
///         +--------+  ------------------------------------------------------------>  +---------+
///         | ACTIVE |                                                                  | EJECTED |
///         +--------+  <------------------------------------------------------------  +---------+
///                     first interval tick once min(base_ejection_time x backoff,
///                     max_ejection_time) + jitter has passed, or an active health check passes
///
/// A detection refused by max_ejection_percent is an `overflow` event; one the chance did not enforce is an
/// event with `enforced == false` (Envoy's "detected" but not "enforced"). A host already ejected is not
/// detected again. Hosts are numbered 0..<hostCount by the owner.
package struct OutlierDetector: Sendable {
    /// What one request attempt on a host ended with (Envoy's `Outlier::Result` and HTTP status codes).
    package enum Result: Equatable, Sendable {
        /// The upstream answered (external origin): Envoy's `putHttpResponseCode`.
        case httpStatus(Int)
        /// The connection came up and a request will follow on it (`LocalOriginConnectSuccess`): counted only
        /// with split_external_local_origin_errors, as a local-origin success.
        case localOriginSuccess
        /// The connection came up and nothing above it reports (tcp_proxy, `LocalOriginConnectSuccessFinal`):
        /// without the split it counts as a 200, with it as a local-origin success.
        case localOriginSuccessFinal
        /// Local-origin failures. Without the split: connect failure and reset count as a 503, timeout as a
        /// 504 (what Envoy's router reports); with it, they feed consecutive_local_origin_failure and the
        /// local-origin success rate.
        case connectFailed, timeout, reset
    }

    /// Why a host was (or would have been) ejected, or what happened instead (Envoy's `OutlierEjectionType`).
    package enum Kind: Equatable, Sendable {
        case consecutive5xx, consecutiveGatewayFailure, consecutiveLocalOriginFailure
        case successRate, failurePercentage, localOriginSuccessRate, localOriginFailurePercentage
        /// A detection that max_ejection_percent refused; `Event.overflowOf` says which.
        case overflow
        /// The host is back in service (its ejection time passed, an active health check passed, or the
        /// host list was replaced).
        case unejected
    }

    package struct Event: Equatable, Sendable {
        package var host: Int
        package var kind: Kind
        /// For a detection: the enforcing_* chance said yes and the host is now ejected. False for a
        /// detection that is only counted, and for `overflow`. True for `unejected`: the host changed state.
        package var enforced: Bool
        /// For `overflow`: the detection that asked for the ejection, so its `ejections_detected_*` counter
        /// can be charged as Envoy charges it. Nil for every other kind.
        package var overflowOf: Kind?

        package init(host: Int, kind: Kind, enforced: Bool, overflowOf: Kind? = nil) {
            self.host = host
            self.kind = kind
            self.enforced = enforced
            self.overflowOf = overflowOf
        }
    }

    /// Which of a host's two success-rate monitors a computation is about.
    package enum Origin: Sendable { case external, localOrigin }

    /// The cluster's last success-rate statistics for one origin (Envoy's `successRateAverage` and
    /// `successRateEjectionThreshold`, shown by /clusters).
    package struct SuccessRateNumbers: Equatable, Sendable {
        package var average: Double
        package var ejectionThreshold: Double
    }

    package let config: OutlierDetectionConfig
    // The fields below are internal only so that OutlierDetector+Interval.swift can reach them.
    package var hosts: [OutlierHostMonitor]
    /// Envoy's `ejections_active` as the detector itself counts it (its `ejections_active_helper_`).
    package var ejectedTotal = 0
    package var externalNumbers: SuccessRateNumbers?
    package var localOriginNumbers: SuccessRateNumbers?

    package init(config: OutlierDetectionConfig, hostCount: Int) {
        precondition(hostCount >= 0, "a cluster cannot have a negative number of hosts")
        self.config = config
        self.hosts = Array(repeating: OutlierHostMonitor(), count: hostCount)
    }

    package var hostCount: Int { hosts.count }

    package func isEjected(_ host: Int) -> Bool { hosts[host].ejected }

    package var ejectedCount: Int { ejectedTotal }

    /// Times the host has been ejected since the host list was last replaced.
    package func numEjections(_ host: Int) -> Int { hosts[host].numEjections }

    /// The host's success rate (percent) in the last interval, or nil when it had too little volume.
    package func successRate(_ host: Int, origin: Origin) -> Double? {
        switch origin {
        case .external: hosts[host].externalSuccessRate
        case .localOrigin: hosts[host].localOriginSuccessRate
        }
    }

    /// The cluster's mean success rate and ejection threshold from the last interval, or nil when success-rate
    /// detection did not run (too few hosts with volume).
    package func successRateNumbers(origin: Origin) -> SuccessRateNumbers? {
        switch origin {
        case .external: externalNumbers
        case .localOrigin: localOriginNumbers
        }
    }

    /// Records a result; consecutive-error ejections happen here, at once (Envoy posts them to the main thread
    /// and ejects there; with one owner there is nothing to post).
    package mutating func record<R: RandomSource>(host: Int, _ result: Result, now: Int64, random: inout R) -> [Event] {
        let detected = hosts[host].put(result, config: config)
        var events: [Event] = []
        for kind in detected {
            onConsecutiveError(host: host, kind: kind, now: now, random: &random, events: &events)
        }
        return events
    }

    /// An active health check passed (successful_active_health_check_uneject_host). Call it when a check of
    /// the host succeeds while the health checker counts the host healthy (Envoy's callback requires
    /// `HealthState::Healthy` and no `FAILED_ACTIVE_HC`); an ejected host is brought back at once.
    package mutating func activeHealthCheckPassed(host: Int, now: Int64) -> [Event] {
        guard config.successfulActiveHealthCheckUnejectHost, hosts[host].ejected else { return [] }
        return [uneject(host: host, now: now)]
    }

    /// Host list replaced (DNS refresh): forget everything about hosts. The returned `unejected` events, one
    /// per host that was ejected, let the owner bring `ejections_active` down, as Envoy does for removed hosts.
    @discardableResult
    package mutating func reset(hostCount: Int) -> [Event] {
        precondition(hostCount >= 0, "a cluster cannot have a negative number of hosts")
        let events = hosts.indices.filter { hosts[$0].ejected }.map {
            Event(host: $0, kind: .unejected, enforced: true)
        }
        hosts = Array(repeating: OutlierHostMonitor(), count: hostCount)
        ejectedTotal = 0
        externalNumbers = nil
        localOriginNumbers = nil
        return events
    }

    // MARK: Ejection (shared with OutlierDetector+Interval.swift)

    /// Envoy's `onConsecutiveErrorWorker`: a host already ejected is ignored, and its counter is left as it
    /// is (the uneject resets it); otherwise the detection is acted on and its run cleared.
    package mutating func onConsecutiveError<R: RandomSource>(
        host: Int, kind: Kind, now: Int64, random: inout R, events: inout [Event]
    ) {
        guard !hosts[host].ejected else { return }
        ejectHost(host: host, kind: kind, now: now, random: &random, events: &events)
        hosts[host].resetConsecutive(kind)
    }

    /// Envoy's `DetectorImpl::ejectHost`. The cap counts this ejection too:
    /// `100 * (ejected + 1) / hosts <= max_ejection_percent`, so 10 % of 3 hosts ejects none unless
    /// always_eject_one_host lets the first one through. Then the enforcing chance is drawn
    /// (`featureEnabled`: `random % 100 < enforcing`); an enforced ejection draws its jitter
    /// (`random % (max_ejection_time_jitter_ms + 1)` ms) and raises the backoff unless it is already past the cap.
    package mutating func ejectHost<R: RandomSource>(
        host: Int, kind: Kind, now: Int64, random: inout R, events: inout [Event]
    ) {
        let maxPercent = Double(min(100, config.maxEjectionPercent))
        let ejectedPercent = 100.0 * Double(ejectedTotal + 1) / Double(hosts.count)
        var shouldEject = ejectedPercent <= maxPercent
        if config.alwaysEjectOneHost {
            shouldEject = ejectedTotal == 0 || shouldEject
        }
        guard shouldEject else {
            events.append(Event(host: host, kind: .overflow, enforced: false, overflowOf: kind))
            return
        }
        let enforced = random.next() % 100 < UInt64(max(0, enforcingPercent(kind)))
        if enforced {
            ejectedTotal += 1
            hosts[host].ejected = true
            hosts[host].numEjections += 1
            hosts[host].lastEjectionTime = now
            let jitterMs = UInt64(max(0, config.maxEjectionTimeJitter.nanoseconds / 1_000_000))
            hosts[host].jitter = Int64(random.next() % (jitterMs + 1)) * 1_000_000
            let base = config.baseEjectionTime.nanoseconds
            let backoff = Int64(hosts[host].ejectTimeBackoff)
            let backoffTime = Self.saturating(base.multipliedReportingOverflow(by: backoff))
            if backoffTime < Self.saturating(maxEjectionTime.addingReportingOverflow(base)) {
                hosts[host].ejectTimeBackoff += 1
            }
        }
        events.append(Event(host: host, kind: kind, enforced: enforced))
    }

    /// Envoy's `unejectHost`: the consecutive counters start again from zero so that a few new errors do not
    /// eject the host again at once.
    package mutating func uneject(host: Int, now: Int64) -> Event {
        ejectedTotal -= 1
        hosts[host].ejected = false
        hosts[host].consecutive5xx = 0
        hosts[host].consecutiveGatewayFailure = 0
        hosts[host].consecutiveLocalOriginFailure = 0
        hosts[host].lastUnejectionTime = now
        return Event(host: host, kind: .unejected, enforced: true)
    }

    /// max_ejection_time as Envoy applies it: when it is not set, the larger of 300 s and base_ejection_time,
    /// and a set value below base_ejection_time is rejected; so the larger of the two is right either way.
    package var maxEjectionTime: Int64 {
        max(config.maxEjectionTime.nanoseconds, config.baseEjectionTime.nanoseconds)
    }

    /// Envoy's `enforceEjection`: the percent chance for each detector.
    package func enforcingPercent(_ kind: Kind) -> Int {
        switch kind {
        case .consecutive5xx: config.enforcingConsecutive5xx
        case .consecutiveGatewayFailure: config.enforcingConsecutiveGatewayFailure
        case .consecutiveLocalOriginFailure: config.enforcingConsecutiveLocalOriginFailure
        case .successRate: config.enforcingSuccessRate
        case .localOriginSuccessRate: config.enforcingLocalOriginSuccessRate
        case .failurePercentage: config.enforcingFailurePercentage
        case .localOriginFailurePercentage: config.enforcingFailurePercentageLocalOrigin
        case .overflow, .unejected: 0
        }
    }

    /// Ejection times are sums and products of configured durations (all positive); a silly config saturates
    /// instead of trapping.
    package static func saturating(_ result: (partialValue: Int64, overflow: Bool)) -> Int64 {
        result.overflow ? .max : result.partialValue
    }
}
