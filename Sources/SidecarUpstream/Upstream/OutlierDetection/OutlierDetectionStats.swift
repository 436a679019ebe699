import SidecarCore

/// The `cluster.<name>.outlier_detection.*` slots of one cluster: Envoy's `ALL_OUTLIER_DETECTION_STATS`
/// (source/common/upstream/outlier_detection_impl.h), registered in that order, deprecated counters included
/// because dashboards still read them.
package struct OutlierDetectionStats: Sendable {
    /// `ejections_detected_<kind>` and `ejections_enforced_<kind>` of one detector.
    package struct Pair: Sendable {
        package let detected: Int
        package let enforced: Int
    }

    package let ejectionsActive: Int
    package let ejectionsEnforcedTotal: Int
    package let ejectionsOverflow: Int
    /// Deprecated: consecutive-5xx detections, whatever became of them.
    package let ejectionsConsecutive5xx: Int
    /// Deprecated: success-rate detections (both origins), whatever became of them.
    package let ejectionsSuccessRate: Int
    /// Deprecated: consecutive-5xx and (external) success-rate detections that max_ejection_percent let
    /// through, enforced or not.
    package let ejectionsTotal: Int
    package let consecutive5xx: Pair
    package let consecutiveGatewayFailure: Pair
    package let consecutiveLocalOriginFailure: Pair
    package let successRate: Pair
    package let failurePercentage: Pair
    package let localOriginSuccessRate: Pair
    package let localOriginFailurePercentage: Pair

    package init(cluster: String, registry r: StatsRegistry) {
        let label = ("envoy_cluster_name", cluster)
        func reg(_ s: String, _ kind: StatsRegistry.Kind = .counter) -> Int {
            r.register(
                "cluster.\(cluster).outlier_detection.\(s)", kind, family: "cluster.outlier_detection.\(s)",
                labels: [label])
        }
        ejectionsConsecutive5xx = reg("ejections_consecutive_5xx")
        let detected5xx = reg("ejections_detected_consecutive_5xx")
        let detectedGateway = reg("ejections_detected_consecutive_gateway_failure")
        let detectedSuccessRate = reg("ejections_detected_success_rate")
        let detectedFailurePercentage = reg("ejections_detected_failure_percentage")
        consecutive5xx = Pair(detected: detected5xx, enforced: reg("ejections_enforced_consecutive_5xx"))
        consecutiveGatewayFailure = Pair(
            detected: detectedGateway, enforced: reg("ejections_enforced_consecutive_gateway_failure"))
        successRate = Pair(detected: detectedSuccessRate, enforced: reg("ejections_enforced_success_rate"))
        failurePercentage = Pair(
            detected: detectedFailurePercentage, enforced: reg("ejections_enforced_failure_percentage"))
        consecutiveLocalOriginFailure = Pair(
            detected: reg("ejections_detected_consecutive_local_origin_failure"),
            enforced: reg("ejections_enforced_consecutive_local_origin_failure"))
        localOriginSuccessRate = Pair(
            detected: reg("ejections_detected_local_origin_success_rate"),
            enforced: reg("ejections_enforced_local_origin_success_rate"))
        localOriginFailurePercentage = Pair(
            detected: reg("ejections_detected_local_origin_failure_percentage"),
            enforced: reg("ejections_enforced_local_origin_failure_percentage"))
        ejectionsEnforcedTotal = reg("ejections_enforced_total")
        ejectionsOverflow = reg("ejections_overflow")
        ejectionsSuccessRate = reg("ejections_success_rate")
        ejectionsTotal = reg("ejections_total")
        ejectionsActive = reg("ejections_active", .gauge)
    }

    /// Increments the slots Envoy increments for one event: `updateDetectedEjectionStats` for every detection
    /// (refused by max_ejection_percent or not), `ejections_overflow` for a refused one, the deprecated
    /// `ejections_total` for a consecutive-5xx or success-rate detection that was not refused (`ejectHost`),
    /// and `updateEnforcedEjectionStats` plus `ejections_active` for an enforced one; an un-ejection lowers
    /// `ejections_active`.
    package func apply(_ event: OutlierDetector.Event, to stats: WorkerStats) {
        switch event.kind {
        case .unejected:
            stats.dec(ejectionsActive)
        case .overflow:
            stats.inc(ejectionsOverflow)
            if let kind = event.overflowOf {
                chargeDetection(kind, to: stats)
            }
        case .consecutive5xx, .consecutiveGatewayFailure, .consecutiveLocalOriginFailure, .successRate,
            .failurePercentage, .localOriginSuccessRate, .localOriginFailurePercentage:
            chargeDetection(event.kind, to: stats)
            if event.kind == .consecutive5xx || event.kind == .successRate {
                stats.inc(ejectionsTotal)
            }
            if event.enforced, let pair = pair(event.kind) {
                stats.inc(ejectionsActive)
                stats.inc(ejectionsEnforcedTotal)
                stats.inc(pair.enforced)
            }
        }
    }

    /// What every detection costs, refused or not: its `ejections_detected_*`, plus the deprecated counters
    /// Envoy bumps before it looks at the cap (`onConsecutiveErrorWorker`, `processSuccessRateEjections`).
    private func chargeDetection(_ kind: OutlierDetector.Kind, to stats: WorkerStats) {
        if let pair = pair(kind) {
            stats.inc(pair.detected)
        }
        switch kind {
        case .consecutive5xx:
            stats.inc(ejectionsConsecutive5xx)
        case .successRate, .localOriginSuccessRate:
            stats.inc(ejectionsSuccessRate)
        case .consecutiveGatewayFailure, .consecutiveLocalOriginFailure, .failurePercentage,
            .localOriginFailurePercentage, .overflow, .unejected:
            break
        }
    }

    private func pair(_ kind: OutlierDetector.Kind) -> Pair? {
        switch kind {
        case .consecutive5xx: consecutive5xx
        case .consecutiveGatewayFailure: consecutiveGatewayFailure
        case .consecutiveLocalOriginFailure: consecutiveLocalOriginFailure
        case .successRate: successRate
        case .failurePercentage: failurePercentage
        case .localOriginSuccessRate: localOriginSuccessRate
        case .localOriginFailurePercentage: localOriginFailurePercentage
        case .overflow, .unejected: nil
        }
    }
}
