import NIOCore
import NIOHTTP1
import SidecarCore

/// The router's attempts at one request (Envoy's `Router::Filter` with its `UpstreamRequest`s,
/// source/common/router/router.cc): the first try, each retry after its back-off, the per-try timeouts, and
/// what ends them. Events in, actions out; no channels, timers, pools or stats. The driver
/// (`HTTPProxyHandler+Upstream.swift`) picks hosts, holds the connection, the pool wait and the timers, asks
/// the circuit breakers, counts the stats and writes the response, all as the returned actions say. The
/// clock, the random source and the circuit breakers' answers come in as arguments, so tests drive them.
///
///              requestRouted            connectionReady          responseHeadReceived
///     idle ──────────────▶ connecting(n) ───────────▶ forwarding(n) ──────────────────▶ responding(n)
///                           ▲  │    │                   │      │                              │
///                           │  │    │ connectionFailed  │      │ retriable status             │ responseEnded,
///                           │  │    ▼                   │      │ (retryResponse)              │ upstreamReset
///                           │  │  failed ◀──────────────┘      │                              ▼
///                           │  │    │   upstreamReset,         │                             done
///                           │  │    │   perTryTimeoutFired     │
///                           │  │    │                          │
///                           │  │    ├─failedAttemptReleased, not retried──▶ done (local reply)
///                           │  │    │                          │
///                           │  │    └─failedAttemptReleased, retried──▶ backingOff ◀──────┘
///                           │  │                                        │
///                           └──┼───────────── backOffElapsed (n+1) ◀────┘
///                              │
///                              └─noHealthyHost, overflowed──▶ done (local reply, never retried)
///
///     any state ──routeTimeoutFired / abandoned──▶ done (a route timeout is never retried)
///
/// Envoy's rules kept here: the per-try timeout starts when an attempt has both its connection and the whole
/// request; once the response head went downstream there is no retry (a reset then resets the downstream);
/// a circuit-breaker overflow is answered with 503 `x-envoy-overloaded` and never retried; a body that
/// outgrew its buffer is not replayed. What is retried and how long to wait is `RetryState`'s decision.
struct RouterAttemptStateMachine {
    /// One try at the request. `number` is 1 for the first try; it is also the value of
    /// `x-envoy-attempt-count` and tells a stale connection or timer from the current one.
    private struct Attempt {
        var number: Int
        /// When the per-try timeout ends the attempt; set once the attempt has its connection and the request
        /// is complete.
        var perTryDeadline: NIODeadline?
        /// The last upstream read (per-try idle timeout).
        var lastActivity: NIODeadline
        /// The driver has a per-try timer scheduled for this attempt.
        var perTryTimerArmed: Bool
    }

    private enum State {
        /// The router has not routed the request upstream yet.
        case idle
        /// A host is being picked, or the attempt waits for a connection from the pool.
        case connecting(Attempt)
        /// The attempt holds a connection, counts as an active request and sends the request.
        case forwarding(Attempt)
        /// An attempt failed; the driver gives back what it held (a retry budget counts the requests still
        /// active) and then asks whether it is retried.
        case failed(Failure)
        /// A failed attempt is retried when the back-off ends; the request holds one unit of the retry breaker.
        case backingOff
        /// The response head went downstream; the attempt still holds its connection until the response ends.
        case responding(Attempt)
        /// Answered, reset or abandoned: nothing is held.
        case done
    }

    /// What the attempt being left held, which the driver gives back.
    enum Held: Equatable {
        case nothing
        /// A pool wait (if the pool queued the request): cancel it.
        case connectionWait
        /// A connection, counted in `upstream_rq_active` and the `max_requests` breaker.
        case connection
        /// A scheduled retry: cancel its timer, give back its unit of the retry breaker.
        case scheduledRetry
    }

    /// Why an attempt failed without a response the client gets.
    enum Failure: Equatable {
        /// `timedOut`: the connect timeout, else a refused or failed connection (the local reply says which).
        case connectFailure(timedOut: Bool)
        /// The upstream closed the connection before the response head.
        case reset
        /// An HTTP/2 upstream reset the stream before the response head (`refused`: REFUSED_STREAM).
        case remoteReset(refused: Bool)
        case perTryTimeout
        case perTryIdleTimeout
    }

    /// The retry counters a finished request bumps (`upstream_rq_retry_*`), Envoy's `RetryStateImpl::shouldRetry`.
    enum RetryVerdict: Equatable {
        /// Not retriable, or no retry policy: nothing to count.
        case notRetried
        /// `upstream_rq_retry_success`: a retried request got a non-5xx response.
        case succeeded
        /// `upstream_rq_retry_limit_exceeded` (and the `URX` response flag on a local reply).
        case limitExceeded
        /// `upstream_rq_retry_overflow`: the retry circuit breaker refused.
        case overflow
    }

    /// Why the router answers the client itself.
    enum LocalReply: Equatable {
        /// `no healthy upstream` (503, `UH`).
        case noHealthyUpstream
        /// A circuit breaker refused (503 with `x-envoy-overloaded`, `UO`); `requestBreaker`: it was the
        /// `max_requests` breaker on a ready connection (`upstream_rq_active_overflow`), which is given back.
        case overflow(requestBreaker: Bool)
        /// The last attempt failed (503 "upstream connect error…", or 504 after a per-try timeout).
        case failed(Failure, RetryVerdict)
    }

    enum Action: Equatable {
        case none
        /// Pick a host (not one tried before when the policy avoids them) and ask the pool for a connection.
        /// `releasingRetry`: the back-off ended; give back the retry breaker unit first.
        case pickHostAndConnect(attempt: Int, releasingRetry: Bool)
        /// The connection is the attempt's: send the head (with `x-envoy-attempt-count: attempt` when the
        /// route asks) and the body so far; arm the per-try timer when a deadline is given.
        case sendRequest(attempt: Int, armPerTryTimer: NIODeadline?)
        /// A connection for an attempt that is no longer current: back to the pool unused.
        case releaseConnection
        case armPerTryTimer(NIODeadline)
        /// The attempt failed: count it (outlier detection, per-try timeout stats), give back what it held, then
        /// report `failedAttemptReleased`.
        case releaseFailedAttempt(Failure, held: Held)
        /// Retry after the back-off (`upstream_rq_retry`); the request holds one unit of the retry breaker.
        case scheduleRetry(after: Int64)
        /// The response head goes downstream (with `x-envoy-attempt-count` when the route asks).
        case sendResponseHead(attempt: Int, RetryVerdict)
        /// A retriable response head: drop it with its connection (counted as a response of its status) and
        /// retry after the back-off.
        case retryResponse(after: Int64)
        /// Answer the client: the request is over for the router.
        case localReply(LocalReply, held: Held)
        /// The response ended: give the connection back to the pool (reusable only if the request ended too).
        case releaseConnectionAfterResponse
        /// The upstream reset mid-response: the only honest signal left is to reset the downstream.
        case resetDownstream(held: Held)
    }

    private var state = State.idle
    /// nil: not retried (no policy, or the body outgrew its buffer).
    private var retry: RetryState?
    /// The effective `per_try_timeout`; applies only under a retry policy, as the router arms it.
    private let perTryTimeout: TimeAmount?
    private let perTryIdleTimeout: TimeAmount?
    private let hasRetryPolicy: Bool
    /// Tries made so far (the one in progress included): `x-envoy-attempt-count`, `%UPSTREAM_REQUEST_ATTEMPT_COUNT%`.
    private(set) var attempts = 0

    /// `policy`: the route's retry policy; `retry`: the request's retry state (nil when nothing is retried);
    /// `perTryTimeout`: `RetryState.perTryTimeout(...)`.
    init(policy: RetryPolicyConfig?, retry: RetryState?, perTryTimeout: ProtoDuration?) {
        self.retry = retry
        hasRetryPolicy = policy != nil
        self.perTryTimeout = policy != nil ? perTryTimeout?.timeAmount : nil
        perTryIdleTimeout = policy?.perTryIdleTimeout.flatMap { $0.isZero ? nil : $0.timeAmount }
    }

    /// The policy retries still follow (`previous_hosts`, host selection attempts).
    var retryPolicy: RetryPolicyConfig? { retry?.policy }
    /// Body parts are kept only while a retry could need them again.
    var keepsBody: Bool { retry != nil }
    /// Upstream reads matter to the per-try idle timeout: report them with `upstreamActivity`.
    var tracksActivity: Bool { perTryIdleTimeout != nil }

    /// The current attempt number while one is connecting, forwarding or responding.
    var currentAttempt: Int? {
        switch state {
        case .connecting(let a), .forwarding(let a), .responding(let a): a.number
        case .idle, .failed, .backingOff, .done: nil
        }
    }

    // MARK: Events

    /// The router chose this request's cluster: the first attempt starts.
    mutating func requestRouted() -> Action {
        switch state {
        case .idle:
            return startAttempt(releasingRetry: false)
        case .connecting, .forwarding, .failed, .backingOff, .responding, .done:
            return .none
        }
    }

    /// The back-off before a retry ended.
    mutating func backOffElapsed() -> Action {
        switch state {
        case .backingOff:
            return startAttempt(releasingRetry: true)
        case .idle, .connecting, .forwarding, .failed, .responding, .done:
            return .none
        }
    }

    /// No host to pick: the request is answered 503 `no healthy upstream`.
    mutating func noHealthyHost() -> Action {
        switch state {
        case .connecting:
            state = .done
            return .localReply(.noHealthyUpstream, held: .connectionWait)
        case .idle, .forwarding, .failed, .backingOff, .responding, .done:
            return .none
        }
    }

    /// The pool refused the attempt (`max_pending_requests`, `max_connections`): never retried.
    mutating func overflowed() -> Action {
        switch state {
        case .connecting:
            state = .done
            return .localReply(.overflow(requestBreaker: false), held: .connectionWait)
        case .idle, .forwarding, .failed, .backingOff, .responding, .done:
            return .none
        }
    }

    /// A connection for `attempt` is ready. `requestAllowed` asks the `max_requests` breaker and is called only
    /// when the connection becomes the attempt's; `requestComplete`: the whole downstream request arrived. The
    /// clock is read only when a per-try timeout can apply (not on a plain proxied request).
    mutating func connectionReady(
        attempt: Int, requestAllowed: () -> Bool, requestComplete: Bool, now: @autoclosure () -> NIODeadline
    ) -> Action {
        switch state {
        case .connecting(var a) where a.number == attempt:
            guard requestAllowed() else {
                // max_requests: Envoy 1.38+ fails the stream with an overflow (upstream_rq_active_overflow).
                state = .done
                return .localReply(.overflow(requestBreaker: true), held: .connectionWait)
            }
            var arm: NIODeadline?
            if hasRetryPolicy {
                let t = now()
                a.lastActivity = t
                arm = armPerTryTimer(&a, requestComplete: requestComplete, now: t)
            }
            state = .forwarding(a)
            return .sendRequest(attempt: a.number, armPerTryTimer: arm)
        case .idle, .connecting, .forwarding, .failed, .backingOff, .responding, .done:
            // The attempt was abandoned (client gone, timeout, retried) while it waited.
            return .releaseConnection
        }
    }

    /// Whether a connection result for `attempt` still matters: the attempt is current and waits for it.
    func isConnecting(attempt: Int) -> Bool {
        switch state {
        case .connecting(let a): a.number == attempt
        case .idle, .forwarding, .failed, .backingOff, .responding, .done: false
        }
    }

    /// The pool could not connect for `attempt`.
    mutating func connectionFailed(attempt: Int, timedOut: Bool) -> Action {
        switch state {
        case .connecting(let a) where a.number == attempt:
            state = .failed(.connectFailure(timedOut: timedOut))
            return .releaseFailedAttempt(.connectFailure(timedOut: timedOut), held: .connectionWait)
        case .idle, .connecting, .forwarding, .failed, .backingOff, .responding, .done:
            return .none
        }
    }

    /// The router passed on the end of the request: the per-try timeout can start (`requestComplete`: the
    /// downstream request as the connection saw it).
    mutating func requestEnded(requestComplete: Bool, now: @autoclosure () -> NIODeadline) -> Action {
        switch state {
        case .forwarding(var a):
            guard hasRetryPolicy else { return .none }
            let arm = armPerTryTimer(&a, requestComplete: requestComplete, now: now())
            state = .forwarding(a)
            return arm.map { .armPerTryTimer($0) } ?? .none
        case .idle, .connecting, .failed, .backingOff, .responding, .done:
            return .none
        }
    }

    /// An upstream read (only while `tracksActivity`).
    mutating func upstreamActivity(now: NIODeadline) {
        switch state {
        case .forwarding(var a):
            a.lastActivity = now
            state = .forwarding(a)
        case .responding(var a):
            a.lastActivity = now
            state = .responding(a)
        case .idle, .connecting, .failed, .backingOff, .done:
            break
        }
    }

    /// The per-try timer of `attempt` fired: the attempt timed out, idled out, or the timer re-arms.
    mutating func perTryTimeoutFired(attempt: Int, requestComplete: Bool, now: NIODeadline) -> Action {
        switch state {
        case .forwarding(var a) where a.number == attempt:
            a.perTryTimerArmed = false
            let timedOut = a.perTryDeadline.map { now >= $0 } ?? false
            let idledOut = perTryIdleTimeout.map { now >= a.lastActivity + $0 } ?? false
            guard timedOut || idledOut else {
                // Activity since the timer was armed moved the idle deadline on.
                let arm = armPerTryTimer(&a, requestComplete: requestComplete, now: now)
                state = .forwarding(a)
                return arm.map { .armPerTryTimer($0) } ?? .none
            }
            let failure = timedOut ? Failure.perTryTimeout : .perTryIdleTimeout
            state = .failed(failure)
            return .releaseFailedAttempt(failure, held: .connection)
        case .responding(var a) where a.number == attempt:
            a.perTryTimerArmed = false
            state = .responding(a)
            return .none
        case .idle, .connecting, .forwarding, .failed, .backingOff, .responding, .done:
            return .none
        }
    }

    /// Response headers (not 1xx) arrived on the current attempt: retried, or passed downstream.
    mutating func responseHeadReceived<R: RandomSource>(
        status: Int, headers: HTTPHeaders, retryAllowed: () -> Bool, random: inout R
    ) -> Action {
        switch state {
        case .forwarding(var a):
            var verdict = RetryVerdict.notRetried
            if var r = retry {
                let decision = r.decide(
                    .response(status: status, headers: headers), retryAllowed: retryAllowed, random: &random)
                retry = r
                switch decision {
                case .retry(let backOff):
                    state = .backingOff
                    return .retryResponse(after: backOff)
                case .done:
                    if r.retried && status < 500 { verdict = .succeeded }
                case .limitExceeded:
                    verdict = .limitExceeded
                case .budgetExhausted:
                    verdict = .overflow
                }
            }
            a.perTryTimerArmed = false
            state = .responding(a)
            return .sendResponseHead(attempt: a.number, verdict)
        case .idle, .connecting, .failed, .backingOff, .responding, .done:
            return .none
        }
    }

    /// The whole response went downstream.
    mutating func responseEnded() -> Action {
        switch state {
        case .forwarding, .responding:
            state = .done
            return .releaseConnectionAfterResponse
        case .idle, .connecting, .failed, .backingOff, .done:
            return .none
        }
    }

    /// The upstream connection closed under the attempt; `failure`: `.remoteReset` when an HTTP/2 upstream reset
    /// the stream.
    mutating func upstreamReset(_ failure: Failure = .reset) -> Action {
        switch state {
        case .forwarding:
            state = .failed(failure)
            return .releaseFailedAttempt(failure, held: .connection)
        case .responding:
            state = .done
            return .resetDownstream(held: .connection)
        case .idle, .connecting, .failed, .backingOff, .done:
            return .none
        }
    }

    /// The failed attempt gave back what it held: retry it, or answer the client. `retryAllowed` asks the retry
    /// circuit breaker (`max_retries` or `retry_budget`) and is called only when a retry would start.
    mutating func failedAttemptReleased<R: RandomSource>(retryAllowed: () -> Bool, random: inout R) -> Action {
        switch state {
        case .failed(let failure):
            var verdict = RetryVerdict.notRetried
            if var r = retry {
                let outcome: RetryState.Outcome =
                    switch failure {
                    case .connectFailure: .connectFailure
                    case .reset: .reset
                    case .remoteReset(let refused): refused ? .refusedStream : .reset
                    case .perTryTimeout, .perTryIdleTimeout: .perTryTimeout
                    }
                let decision = r.decide(outcome, retryAllowed: retryAllowed, random: &random)
                retry = r
                switch decision {
                case .retry(let backOff):
                    state = .backingOff
                    return .scheduleRetry(after: backOff)
                case .done: break
                case .limitExceeded: verdict = .limitExceeded
                case .budgetExhausted: verdict = .overflow
                }
            }
            state = .done
            return .localReply(.failed(failure, verdict), held: .nothing)
        case .idle, .connecting, .forwarding, .backingOff, .responding, .done:
            return .none
        }
    }

    /// The route timeout (across all attempts) fired: never retried. Returns what the request held; when it was
    /// a connection, outlier detection counts a timeout for its host.
    mutating func routeTimeoutFired() -> Held {
        abandoned()
    }

    /// The request is over for the router without it (client gone, a local reply, a stream reset, the route
    /// timeout): whatever the attempt held is given back, nothing more happens.
    mutating func abandoned() -> Held {
        let held: Held
        switch state {
        case .idle, .failed, .done: held = .nothing
        case .connecting: held = .connectionWait
        case .forwarding, .responding: held = .connection
        case .backingOff: held = .scheduledRetry
        }
        state = .done
        return held
    }

    /// The request body outgrew `per_request_buffer_limit_bytes`: it can no longer be replayed, so it is not
    /// retried (Envoy's `retry_or_shadow_abandoned`).
    mutating func bodyOutgrewBuffer() {
        retry = nil
    }

    // MARK: Transitions shared by events

    private mutating func startAttempt(releasingRetry: Bool) -> Action {
        attempts += 1
        let attempt = Attempt(
            number: attempts, perTryDeadline: nil, lastActivity: .uptimeNanoseconds(0), perTryTimerArmed: false)
        state = .connecting(attempt)
        return .pickHostAndConnect(attempt: attempts, releasingRetry: releasingRetry)
    }

    /// The per-try timeout (from when the attempt has its connection and the whole request) and the per-try
    /// idle timeout (from the last upstream read) share one timer; returns when to arm it, nil: no timer (one
    /// is armed already, or neither timeout applies).
    private func armPerTryTimer(_ a: inout Attempt, requestComplete: Bool, now: NIODeadline) -> NIODeadline? {
        guard hasRetryPolicy, !a.perTryTimerArmed else { return nil }
        if a.perTryDeadline == nil, requestComplete, let t = perTryTimeout { a.perTryDeadline = now + t }
        var next = a.perTryDeadline
        if let idle = perTryIdleTimeout {
            let d = a.lastActivity + idle
            next = next.map { min($0, d) } ?? d
        }
        if next != nil { a.perTryTimerArmed = true }
        return next
    }
}
