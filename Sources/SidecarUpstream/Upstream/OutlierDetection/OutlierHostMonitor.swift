import SidecarCore

/// One host's outlier-detection bookkeeping: Envoy's `DetectorHostMonitorImpl`
/// (source/common/upstream/outlier_detection_impl.cc). It turns request results into counters and says which
/// consecutive-error detector has just reached its threshold; the detector decides what to do about it.
package struct OutlierHostMonitor: Sendable {
    /// Requests and successes seen in the current interval, for success-rate and failure-percentage detection
    /// (Envoy's `SuccessRateAccumulatorBucket`).
    package struct Bucket: Sendable, Equatable {
        package var total = 0
        package var success = 0
    }

    package var consecutive5xx = 0
    package var consecutiveGatewayFailure = 0
    package var consecutiveLocalOriginFailure = 0
    /// HTTP statuses (and, without the split, local-origin results mapped to statuses).
    package var externalOrigin = Bucket()
    /// Local-origin results; only fed with `split_external_local_origin_errors`.
    package var localOrigin = Bucket()

    /// Envoy's `FAILED_OUTLIER_CHECK` health flag.
    package var ejected = false
    /// Times ejected, ever (`num_ejections` in Envoy's event log and /clusters).
    package var numEjections = 0
    /// The multiplier of `base_ejection_time`: up by one per ejection, down by one per interval spent
    /// un-ejected (Envoy's `eject_time_backoff_`).
    package var ejectTimeBackoff = 0
    package var lastEjectionTime: Int64?
    package var lastUnejectionTime: Int64?
    /// This ejection's jitter, drawn when the host was ejected, in nanoseconds (whole milliseconds, as Envoy).
    package var jitter: Int64 = 0
    /// The host's success rate in the last interval, when it had enough volume for either detector
    /// (Envoy's `successRate(monitor_type)`, shown by /clusters); nil is Envoy's -1.
    package var externalSuccessRate: Double?
    package var localOriginSuccessRate: Double?

    /// Envoy's `putResult`: `putResultNoLocalExternalSplit` maps local-origin results to the HTTP status the
    /// router would report (`resultToHttpCode`; the router passes 504 for a timeout), while
    /// `putResultWithLocalExternalSplit` keeps them on their own counters. Returns the consecutive detectors
    /// that reached their threshold with this result, in the order Envoy posts them.
    package mutating func put(_ result: OutlierDetector.Result, config: OutlierDetectionConfig) -> [OutlierDetector.Kind] {
        if config.splitExternalLocalOriginErrors {
            switch result {
            case .httpStatus(let code):
                return putHTTPStatus(code, config: config)
            case .localOriginSuccess, .localOriginSuccessFinal:
                localOriginNoFailure()
                return []
            case .connectFailed, .timeout, .reset:
                return localOriginFailure(config: config)
            }
        }
        switch result {
        case .httpStatus(let code):
            return putHTTPStatus(code, config: config)
        case .localOriginSuccess:
            // A connection came up; the request on it reports its own status later, so nothing is counted.
            return []
        case .localOriginSuccessFinal:
            return putHTTPStatus(200, config: config)
        case .timeout:
            return putHTTPStatus(504, config: config)
        case .connectFailed, .reset:
            // The router reports a reset as `LocalOriginConnectFailed` (router.cc `onUpstreamReset`).
            return putHTTPStatus(503, config: config)
        }
    }

    /// Envoy's `putHttpResponseCode`. A gateway failure (502/503/504) counts towards both consecutive
    /// detectors; any other 5xx breaks a run of gateway failures; anything else is a success and breaks
    /// both runs. A detector fires when its counter becomes equal to the threshold (not "at least"), so a
    /// counter that ran past it while the host was ejected fires again only after a reset.
    package mutating func putHTTPStatus(_ code: Int, config: OutlierDetectionConfig) -> [OutlierDetector.Kind] {
        externalOrigin.total += 1
        guard (500..<600).contains(code) else {
            externalOrigin.success += 1
            consecutive5xx = 0
            consecutiveGatewayFailure = 0
            return []
        }
        var detected: [OutlierDetector.Kind] = []
        if (502...504).contains(code) {
            consecutiveGatewayFailure += 1
            if consecutiveGatewayFailure == config.consecutiveGatewayFailure {
                detected.append(.consecutiveGatewayFailure)
            }
        } else {
            consecutiveGatewayFailure = 0
        }
        consecutive5xx += 1
        if consecutive5xx == config.consecutive5xx {
            detected.append(.consecutive5xx)
        }
        return detected
    }

    /// Envoy's `localOriginFailure`.
    package mutating func localOriginFailure(config: OutlierDetectionConfig) -> [OutlierDetector.Kind] {
        localOrigin.total += 1
        consecutiveLocalOriginFailure += 1
        return consecutiveLocalOriginFailure == config.consecutiveLocalOriginFailure
            ? [.consecutiveLocalOriginFailure] : []
    }

    /// Envoy's `localOriginNoFailure`.
    package mutating func localOriginNoFailure() {
        localOrigin.total += 1
        localOrigin.success += 1
        consecutiveLocalOriginFailure = 0
    }

    /// Clears the run that a detection just acted on, so the next bout is counted from zero even without a
    /// success in between (end of Envoy's `onConsecutiveErrorWorker`).
    package mutating func resetConsecutive(_ kind: OutlierDetector.Kind) {
        switch kind {
        case .consecutive5xx: consecutive5xx = 0
        case .consecutiveGatewayFailure: consecutiveGatewayFailure = 0
        case .consecutiveLocalOriginFailure: consecutiveLocalOriginFailure = 0
        case .successRate, .failurePercentage, .localOriginSuccessRate, .localOriginFailurePercentage,
            .overflow, .unejected:
            break
        }
    }
}
