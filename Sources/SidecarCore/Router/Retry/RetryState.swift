import NIOHTTP1

/// One request's retries as Envoy's `RetryStateImpl` (source/common/router/retry_state_impl.cc) runs them:
/// which failed attempts are retried, how many times, and how long to wait first. A plain value: the router
/// keeps one per request, reports each attempt's outcome and acts on the decision. The circuit breaker and
/// the random source are handed in, so tests drive both.
///
///     init? ──► attempt ──► decide(outcome) ──┬── .done / .limitExceeded / .budgetExhausted ──► client
///                  ▲                          │
///                  └──── wait backOffNanos ◄──┴── .retry
///
/// Left to the caller, as in Envoy's router (source/common/router/router.cc):
/// - the route's global timeout is never retried (`Filter::onResponseTimeout` does not ask the retry state):
///   the request ends with 504 without a call to `decide`;
/// - nothing is retried once the response started downstream, or when the request body outgrew its buffer
///   (`retry_or_shadow_abandoned`): `Filter::maybeRetryReset` checks both before asking;
/// - the per-try timeout itself comes from `RetryState.perTryTimeout(...)`, which applies even when the
///   request gets no retry state;
/// - the stats: `upstream_rq_retry` and `upstream_rq_retry_backoff_exponential` on `.retry`,
///   `upstream_rq_retry_limit_exceeded` on `.limitExceeded`, `upstream_rq_retry_overflow` on
///   `.budgetExhausted`, `upstream_rq_retry_success` on `.done` when `retried` (`RetryStateImpl::shouldRetry`).
///   Envoy leaves out the back-off counter for a 425 retried at once; a `.retry` does not tell that case apart.
package struct RetryState {
    /// The effective policy for this request: the route's (or virtual host's) policy with the trusted
    /// request headers merged in. `numRetries` is the budget the request started with.
    package private(set) var policy: RetryPolicyConfig

    /// What one attempt ended with.
    package enum Outcome {
        /// Response headers arrived (before any of the response went downstream).
        case response(status: Int, headers: HTTPHeaders)
        /// No connection: refused, timed out or failed before the request could be sent
        /// (Envoy's `LocalConnectionFailure`, `RemoteConnectionFailure`, `ConnectionTimeout`).
        case connectFailure
        /// The upstream closed or reset the stream after the request started, before response headers.
        case reset
        /// An HTTP/2 upstream refused the stream (RST_STREAM REFUSED_STREAM): it did not process the request.
        case refusedStream
        /// `per_try_timeout` or `per_try_idle_timeout` fired; Envoy resets the attempt with `LocalReset`.
        case perTryTimeout
        /// The connection pool refused the attempt because a circuit breaker is open (Envoy's `Overflow`).
        case overflow
    }

    package enum Decision: Equatable {
        /// Not retriable: pass this outcome to the client.
        case done
        /// Start another attempt after this wait.
        case retry(backOffNanos: Int64)
        /// Retriable, but the request used up its retries (`upstream_rq_retry_limit_exceeded`).
        case limitExceeded
        /// Retriable, but the cluster's retry circuit breaker refused (`upstream_rq_retry_overflow`).
        case budgetExhausted
    }

    /// Attempts made so far, counting the one a `.retry` decision starts: 1 after the first try. The value
    /// for `x-envoy-attempt-count`.
    package private(set) var attempts = 1
    /// At least one retry happened. A `.done` after that is what Envoy counts as `upstream_rq_retry_success`:
    /// its `shouldRetry` increments the counter whenever a retry was armed and the next outcome is not
    /// retriable.
    package private(set) var retried = false

    /// `retries_remaining_`, a `uint32_t` in Envoy.
    private var retriesRemaining: UInt32
    private var backOff: JitteredExponentialBackOff
    /// The downstream request came as TLS early data (`early-data` header): a 425 is then passed on, not
    /// retried.
    private let requestIsEarlyData: Bool

    /// Envoy's `RetryStateImpl::create` and its constructor. `honorRequestHeaders` says whether the
    /// `x-envoy-*` retry headers are trusted: Envoy's connection manager strips them from external requests
    /// (`ConnectionManagerUtility::cleanInternalHeaders`), so only internal callers can steer retries. nil: the
    /// request is not retried (Envoy creates no retry state without `retry_on` from route or headers, and one
    /// whose conditions end up empty never retries).
    ///
    /// `retriable_request_headers` sees only regular headers here; use `init(route:request:...)` to match
    /// pseudo-headers such as `:method`.
    package init?(route: RetryPolicyConfig?, requestHeaders: HTTPHeaders, honorRequestHeaders: Bool) {
        self.init(
            route: route, requestHeaders: requestHeaders, honorRequestHeaders: honorRequestHeaders,
            lookup: { Self.joinedValues(requestHeaders, $0) })
    }

    /// As `init(route:requestHeaders:honorRequestHeaders:)`, with `retriable_request_headers` matched the way
    /// route matchers see the request, pseudo-headers (`:method`, `:path`, `:authority`) included.
    package init?(route: RetryPolicyConfig?, request: RouteRequest, honorRequestHeaders: Bool) {
        self.init(
            route: route, requestHeaders: request.headers, honorRequestHeaders: honorRequestHeaders,
            lookup: request.header)
    }

    private init?(
        route: RetryPolicyConfig?, requestHeaders: HTTPHeaders, honorRequestHeaders: Bool,
        lookup: (String) -> String?
    ) {
        // A request without a route policy gets Envoy's empty `RetryPolicyImpl`: no conditions, one retry,
        // 25 ms base back-off.
        let merged = Self.merge(
            route: route ?? RetryPolicyConfig(), requestHeaders: requestHeaders,
            honorRequestHeaders: honorRequestHeaders, lookup: lookup)
        guard !merged.policy.retryOn.isEmpty else { return nil }
        policy = merged.policy
        retriesRemaining = merged.retries
        backOff = JitteredExponentialBackOff(base: policy.backOffBase, max: policy.effectiveBackOffMax)
        requestIsEarlyData = requestHeaders.contains(name: "early-data")
    }

    /// `RetryStateImpl::shouldRetryHeaders` / `shouldRetryReset` and `shouldRetry`: whether this outcome is
    /// retried. The order is Envoy's: not retriable → `.done`; no retries left → `.limitExceeded`; one retry
    /// is then used up even if the circuit breaker refuses it → `.budgetExhausted`.
    ///
    /// `retryAllowed` asks the cluster's retry circuit breaker (`max_retries` or `retry_budget`, e.g.
    /// `ClusterResources.tryAcquire(.retries, priority)`) and is called only when a retry would start. When it
    /// returns true the caller holds one unit of the retries resource until the retried attempt ends (Envoy's
    /// `resetRetry` gives it back at the next `shouldRetry` and when the request goes away).
    package mutating func decide<R: RandomSource>(_ outcome: Outcome, retryAllowed: () -> Bool, random: inout R) -> Decision {
        let kind = wouldRetry(outcome)
        switch kind {
        case .no:
            return .done
        case .withBackOff, .immediately:
            break
        }
        guard retriesRemaining > 0 else { return .limitExceeded }
        retriesRemaining -= 1
        guard retryAllowed() else { return .budgetExhausted }
        let wait: Int64
        switch kind {
        case .withBackOff: wait = backOff.next(random: &random)
        case .immediately, .no: wait = 0
        }
        attempts += 1
        retried = true
        return .retry(backOffNanos: wait)
    }

    /// The back-off before retry `attempt` (1-based) with full jitter: `random % min(base × 2^(attempt-1), max)`
    /// milliseconds, in nanoseconds. The same numbers a `RetryState` produces for its retries with the same
    /// random values.
    package static func backOff<R: RandomSource>(attempt: Int, base: ProtoDuration, max: ProtoDuration, random: inout R)
        -> Int64
    {
        let strategy = JitteredExponentialBackOff(base: base, max: max)
        let window = JitteredExponentialBackOff.windowMilliseconds(
            attempt: attempt, baseMilliseconds: strategy.baseMilliseconds, maxMilliseconds: strategy.maxMilliseconds)
        return Int64(random.next() % window) * 1_000_000
    }

    // MARK: Which outcomes are retriable

    /// Envoy's `RetryState::RetryDecision`.
    private enum RetryKind {
        case no, withBackOff, immediately
    }

    private func wouldRetry(_ outcome: Outcome) -> RetryKind {
        switch outcome {
        case .response(let status, let headers):
            return wouldRetryFromHeaders(status: status, headers: headers)
        case .connectFailure:
            return wouldRetryFromReset(connectionFailure: true, requestStarted: false)
        case .reset:
            return wouldRetryFromReset(connectionFailure: false, requestStarted: true)
        case .refusedStream:
            // Envoy: a refused stream under `refused-stream` is retried at once; else it is any reset.
            if policy.retryOn.contains(.refusedStream) { return .immediately }
            return wouldRetryFromReset(connectionFailure: false, requestStarted: true)
        case .perTryTimeout:
            // `Filter::onPerTryTimeoutCommon` calls `maybeRetryReset(LocalReset, ...)` on a started request:
            // retried under `reset`, `5xx` and `gateway-error`, not under `connect-failure`,
            // `reset-before-request` or `retriable-status-codes` 504 (all checked against Envoy 1.40).
            return wouldRetryFromReset(connectionFailure: false, requestStarted: true)
        case .overflow:
            // `wouldRetryFromReset`: "we never retry if the reset reason is overflow".
            return .no
        }
    }

    /// `RetryStateImpl::wouldRetryFromReset` without its HTTP/3 branches (REFUSED_STREAM is `.refusedStream`).
    private func wouldRetryFromReset(connectionFailure: Bool, requestStarted: Bool) -> RetryKind {
        let on = policy.retryOn
        if connectionFailure && on.contains(.connectFailure) { return .withBackOff }
        if on.contains(.resetBeforeRequest) && !requestStarted { return .withBackOff }
        if on.contains(.reset) { return .withBackOff }
        // "Currently we count an upstream reset as a 5xx (since it will result in one)."
        if !on.isDisjoint(with: [.fiveXX, .gatewayError]) { return .withBackOff }
        return .no
    }

    /// `RetryStateImpl::wouldRetryFromHeaders`. A response with `x-envoy-overloaded` is treated like any
    /// other: Envoy 1.40 retries an upstream 503 carrying it under `5xx` (checked), the old
    /// "never retry overloaded" rule is gone from this function. Our own circuit-breaker refusal is
    /// `.overflow`, never retried.
    private func wouldRetryFromHeaders(status: Int, headers: HTTPHeaders) -> RetryKind {
        let on = policy.retryOn
        // A response rate limited by an upstream Envoy is retried only under `envoy-ratelimited`, and then
        // whatever its status (Envoy 1.40 retried a 200 carrying the header).
        if headers.contains(name: "x-envoy-ratelimited") {
            return on.contains(.envoyRateLimited) ? .withBackOff : .no
        }
        if on.contains(.fiveXX) && (500..<600).contains(status) { return .withBackOff }
        if on.contains(.gatewayError) && (502...504).contains(status) { return .withBackOff }
        if on.contains(.retriable4xx) && status == 409 { return .withBackOff }
        if on.contains(.retriableStatusCodes) {
            for code in policy.retriableStatusCodes where code == status {
                // 425 Too Early is retried at once, and only when the downstream request was not early data.
                if code != 425 { return .withBackOff }
                if !requestIsEarlyData { return .immediately }
            }
        }
        if on.contains(.retriableHeaders) {
            let lookup: (String) -> String? = { name in
                name == ":status" ? String(status) : Self.joinedValues(headers, name)
            }
            if policy.retriableHeaders.contains(where: { $0.matches(lookup) }) { return .withBackOff }
        }
        if !on.isDisjoint(with: .grpcConditions), let grpc = Self.grpcStatus(headers) {
            let condition: RetryPolicyConfig.RetryOn? =
                switch grpc {
                case 1: .grpcCancelled
                case 4: .grpcDeadlineExceeded
                case 8: .grpcResourceExhausted
                case 13: .grpcInternal
                case 14: .grpcUnavailable
                default: nil
                }
            if let condition, on.contains(condition) { return .withBackOff }
        }
        return .no
    }

    /// `Grpc::Common::getGrpcStatus`: the `grpc-status` response header as a number (trailers are not
    /// consulted, as in Envoy's header check).
    private static func grpcStatus(_ headers: HTTPHeaders) -> UInt64? {
        guard let value = headers.first(name: "grpc-status") else { return nil }
        return parseUnsigned(Substring(value))
    }

    /// A header's values joined with ",", as Envoy stores a repeated header and as matchers see it.
    package static func joinedValues(_ headers: HTTPHeaders, _ name: String) -> String? {
        var it = headers[name].makeIterator()
        guard let first = it.next() else { return nil }
        guard let second = it.next() else { return first }
        var joined = first + "," + second
        while let more = it.next() { joined += "," + more }
        return joined
    }
}
