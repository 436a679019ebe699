/// One host's health as active health checks see it: a pure value, fed check results, answering with the
/// transitions its owner must act on (load balancer membership, the `health_check.healthy` gauge).
///
/// Mirrors Envoy's `HealthCheckerImplBase::ActiveHealthCheckSession::handleSuccess` / `setUnhealthy`
/// (source/extensions/health_checkers/common/health_checker_base_impl.cc):
///
/// ```
///   pending (unhealthy) ──first success───────────────────────────────▶ healthy
///          │                                                            │  ▲
///     first failure       unhealthy_threshold consecutive network       │  │ healthy_threshold
///          ▼              failures, or one active/passive failure       │  │ consecutive successes
///      unhealthy ◀──────────────────────────────────────────────────────┘  │
///          └───────────────────────────────────────────────────────────────┘
/// ```
///
/// A success resets the failure streak and a failure resets the success streak, so only consecutive
/// results count. Hosts start unhealthy (Envoy sets `FAILED_ACTIVE_HC` and `PENDING_ACTIVE_HC` on hosts of a
/// health-checked cluster) and the very first success makes them healthy at once, which makes start-up
/// fast at a small cost in certainty.
package struct HostHealthCheckState {
    package enum Transition: Equatable {
        case becameHealthy
        case becameUnhealthy
    }

    /// Why a check failed, as Envoy's `envoy.data.core.v3.HealthCheckFailureType`. Network failures (refused,
    /// reset, closed before an answer, timeout) count towards `unhealthy_threshold`; an answer that says
    /// "unhealthy" (`ACTIVE`, e.g. a 503) and a `PASSIVE` report need no threshold: the host asked for it.
    package enum FailureType: Equatable {
        /// The host answered, and the answer was a failure (status outside `expected_statuses`).
        case active
        /// Connection refused, reset, or closed before a complete answer.
        case network
        /// No complete answer within `timeout`.
        case networkTimeout
        /// A request routed to the host came back with `x-envoy-immediate-health-check-fail`.
        case passive

        /// Envoy's `networkHealthCheckFailureType`: the failures that count towards the threshold and the
        /// `network_failure` stat.
        package var isNetwork: Bool {
            switch self {
            case .network, .networkTimeout: true
            case .active, .passive: false
            }
        }
    }

    package let healthyThreshold: Int
    package let unhealthyThreshold: Int
    package private(set) var isHealthy = false
    package private(set) var pendingFirstCheck = true
    /// `DEGRADED_ACTIVE_HC`: the last successful answer carried `x-envoy-degraded`.
    package private(set) var isDegraded = false
    /// `EXCLUDED_VIA_IMMEDIATE_HC_FAIL`: the host said `x-envoy-immediate-health-check-fail`; it stays out of
    /// load balancing (even in panic mode) until it becomes healthy again.
    package private(set) var excludedViaImmediateFailure = false
    /// Envoy's `num_healthy_`: consecutive successes while unhealthy.
    private var consecutiveSuccesses = 0
    /// Envoy's `num_unhealthy_`: consecutive counted failures while healthy.
    private var consecutiveFailures = 0

    package init(healthyThreshold: Int, unhealthyThreshold: Int) {
        self.healthyThreshold = max(1, healthyThreshold)
        self.unhealthyThreshold = max(1, unhealthyThreshold)
    }

    /// A check passed. `degraded`: the answer carried `x-envoy-degraded` (the host stays usable but is
    /// preferred less; degraded changes are not health transitions).
    ///
    /// The first result of all reports a transition even when health does not change, as Envoy's
    /// `clearPendingFlag` returns `Changed`, so that an owner that keeps pending hosts apart learns the verdict.
    package mutating func checkSucceeded(degraded: Bool = false) -> Transition? {
        consecutiveFailures = 0
        let wasPending = pendingFirstCheck
        pendingFirstCheck = false
        isDegraded = degraded
        if isHealthy { return nil }
        consecutiveSuccesses += 1
        guard wasPending || consecutiveSuccesses >= healthyThreshold else { return nil }
        consecutiveSuccesses = 0
        isHealthy = true
        excludedViaImmediateFailure = false
        return .becameHealthy
    }

    /// A check failed. The default, `.network`, counts towards `unhealthy_threshold`; `.active` and `.passive`
    /// failures turn a healthy host unhealthy at once unless `retriable` (Envoy's `retriable_statuses`).
    /// `immediateFailHeader`: the answer carried `x-envoy-immediate-health-check-fail`.
    package mutating func checkFailed(
        _ type: FailureType = .network, retriable: Bool = false, immediateFailHeader: Bool = false
    ) -> Transition? {
        consecutiveSuccesses = 0
        let wasPending = pendingFirstCheck
        pendingFirstCheck = false
        if immediateFailHeader || type == .passive { excludedViaImmediateFailure = true }
        guard isHealthy else { return wasPending ? .becameUnhealthy : nil }
        consecutiveFailures += 1
        guard (!type.isNetwork && !retriable) || consecutiveFailures >= unhealthyThreshold else { return nil }
        consecutiveFailures = 0
        isHealthy = false
        return .becameUnhealthy
    }
}
