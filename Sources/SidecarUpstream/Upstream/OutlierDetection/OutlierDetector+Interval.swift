import SidecarCore

/// The periodic sweep: Envoy's `DetectorImpl::onIntervalTimer` and `processSuccessRateEjections`
/// (source/common/upstream/outlier_detection_impl.cc).
extension OutlierDetector {
    /// Called every `config.interval`: un-ejects hosts whose ejection time has passed, runs success-rate and
    /// failure-percentage detection over the interval's counts (external origin first, then local origin),
    /// decays the ejection multiplier of hosts that stayed un-ejected, and resets the interval counters.
    /// Hosts are visited in index order (Envoy walks a hash map, in no order it promises).
    package mutating func intervalElapsed<R: RandomSource>(now: Int64, random: inout R) -> [Event] {
        var events: [Event] = []
        // Envoy swaps each host's success-rate bucket here: the interval that just ended is judged, new
        // results go to a fresh bucket.
        var external: [OutlierHostMonitor.Bucket] = []
        var localOrigin: [OutlierHostMonitor.Bucket] = []
        external.reserveCapacity(hosts.count)
        localOrigin.reserveCapacity(hosts.count)
        for host in hosts.indices {
            if let event = checkHostForUneject(host: host, now: now) {
                events.append(event)
            }
            external.append(hosts[host].externalOrigin)
            localOrigin.append(hosts[host].localOrigin)
            hosts[host].externalOrigin = OutlierHostMonitor.Bucket()
            hosts[host].localOrigin = OutlierHostMonitor.Bucket()
            hosts[host].externalSuccessRate = nil
            hosts[host].localOriginSuccessRate = nil
        }
        processSuccessRateEjections(.external, buckets: external, now: now, random: &random, events: &events)
        processSuccessRateEjections(.localOrigin, buckets: localOrigin, now: now, random: &random, events: &events)

        // A host that has been back in service for at least one interval earns one step off its backoff per
        // interval; the interval in which it came back does not count.
        for host in hosts.indices where !hosts[host].ejected {
            if let back = hosts[host].lastUnejectionTime, now - back >= config.interval.nanoseconds,
                hosts[host].ejectTimeBackoff != 0
            {
                hosts[host].ejectTimeBackoff -= 1
            }
        }
        return events
    }

    /// Envoy's `checkHostForUneject`: back in service once
    /// `min(base_ejection_time * backoff, max_ejection_time) + jitter <= now - ejection time`.
    package mutating func checkHostForUneject(host: Int, now: Int64) -> Event? {
        guard hosts[host].ejected, let ejectedAt = hosts[host].lastEjectionTime else { return nil }
        let backoff = Int64(hosts[host].ejectTimeBackoff)
        let scaled = Self.saturating(config.baseEjectionTime.nanoseconds.multipliedReportingOverflow(by: backoff))
        let ejectionTime = Self.saturating(min(scaled, maxEjectionTime).addingReportingOverflow(hosts[host].jitter))
        guard ejectionTime <= now - ejectedAt else { return nil }
        return uneject(host: host, now: now)
    }

    /// Envoy's `processSuccessRateEjections` for one origin. Ejected hosts and hosts without a request are left
    /// out. Success rate: with at least success_rate_minimum_hosts hosts of success_rate_request_volume
    /// requests, a host below `mean - stdev * success_rate_stdev_factor / 1000` (population standard
    /// deviation) is an outlier. Failure percentage: with at least failure_percentage_minimum_hosts hosts of
    /// failure_percentage_request_volume requests, a host whose failure percentage is at least
    /// failure_percentage_threshold is an outlier.
    package mutating func processSuccessRateEjections<R: RandomSource>(
        _ origin: Origin, buckets: [OutlierHostMonitor.Bucket], now: Int64, random: inout R,
        events: inout [Event]
    ) {
        setNumbers(nil, origin)
        let srMinimumHosts = config.successRateMinimumHosts
        let srVolume = config.successRateRequestVolume
        let fpMinimumHosts = config.failurePercentageMinimumHosts
        let fpVolume = config.failurePercentageRequestVolume
        guard hosts.count >= srMinimumHosts || hosts.count >= fpMinimumHosts else { return }

        var successRateHosts: [(host: Int, rate: Double)] = []
        var failurePercentageHosts: [(host: Int, rate: Double)] = []
        var sum = 0.0
        for host in hosts.indices where !hosts[host].ejected {
            let bucket = buckets[host]
            guard bucket.total > 0 else { continue }
            let rate = Double(bucket.success) * 100.0 / Double(bucket.total)
            if bucket.total >= min(srVolume, fpVolume) {
                setHostRate(rate, host, origin)
            }
            if bucket.total >= srVolume {
                successRateHosts.append((host, rate))
                sum += rate
            }
            if bucket.total >= fpVolume {
                failurePercentageHosts.append((host, rate))
            }
        }

        let (successRateKind, failurePercentageKind): (Kind, Kind) =
            switch origin {
            case .external: (.successRate, .failurePercentage)
            case .localOrigin: (.localOriginSuccessRate, .localOriginFailurePercentage)
            }

        if !successRateHosts.isEmpty && successRateHosts.count >= srMinimumHosts {
            let numbers = Self.successRateEjectionThreshold(
                sum: sum, rates: successRateHosts.map(\.rate),
                stdevFactor: Double(config.successRateStdevFactor) / 1000.0)
            setNumbers(numbers, origin)
            for (host, rate) in successRateHosts where rate < numbers.ejectionThreshold {
                ejectHost(host: host, kind: successRateKind, now: now, random: &random, events: &events)
            }
        }

        if !failurePercentageHosts.isEmpty && failurePercentageHosts.count >= fpMinimumHosts {
            let threshold = Double(config.failurePercentageThreshold)
            // Envoy would eject a host the success-rate pass just ejected a second time (its `ejectHost` does
            // not check); such a host is skipped here, as a consecutive-error detection of it would be.
            for (host, rate) in failurePercentageHosts where 100.0 - rate >= threshold && !hosts[host].ejected {
                ejectHost(host: host, kind: failurePercentageKind, now: now, random: &random, events: &events)
            }
        }
    }

    /// Envoy's `successRateEjectionThreshold`: e.g. rates {50, 100, 100, 100, 100} give mean 90, stdev 20,
    /// and with a factor of 1.9 a threshold of 52.
    package static func successRateEjectionThreshold(sum: Double, rates: [Double], stdevFactor: Double) -> SuccessRateNumbers {
        let mean = sum / Double(rates.count)
        let variance = rates.reduce(0.0) { $0 + ($1 - mean) * ($1 - mean) } / Double(rates.count)
        return SuccessRateNumbers(average: mean, ejectionThreshold: mean - stdevFactor * variance.squareRoot())
    }

    private mutating func setNumbers(_ numbers: SuccessRateNumbers?, _ origin: Origin) {
        switch origin {
        case .external: externalNumbers = numbers
        case .localOrigin: localOriginNumbers = numbers
        }
    }

    private mutating func setHostRate(_ rate: Double, _ host: Int, _ origin: Origin) {
        switch origin {
        case .external: hosts[host].externalSuccessRate = rate
        case .localOrigin: hosts[host].localOriginSuccessRate = rate
        }
    }
}
