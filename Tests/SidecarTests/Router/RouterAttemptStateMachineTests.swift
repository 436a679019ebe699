import NIOCore
import NIOHTTP1
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// The router's attempts driven event by event, without channels, timers or pools: what each event asks the
/// driver to do, in Envoy's order (retry decisions come from `RetryState`, tested on their own).
@Suite struct RouterAttemptStateMachineTests {
    typealias Machine = RouterAttemptStateMachine

    static let ms: Int64 = 1_000_000
    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    static func machine(
        _ retryOn: String?, numRetries: Int = 1, perTryTimeout: ProtoDuration? = nil,
        perTryIdleTimeout: ProtoDuration? = nil
    ) -> Machine {
        guard let retryOn else { return Machine(policy: nil, retry: nil, perTryTimeout: nil) }
        var p = RetryPolicyConfig()
        let (on, unknown) = RetryPolicyConfig.RetryOn.parse(Substring(retryOn))
        precondition(unknown.isEmpty, "unknown retry_on \(unknown)")
        p.retryOn = on
        p.numRetries = numRetries
        p.perTryTimeout = perTryTimeout
        p.perTryIdleTimeout = perTryIdleTimeout
        let retry = RetryState(route: p, requestHeaders: HTTPHeaders(), honorRequestHeaders: false)
        return Machine(policy: p, retry: retry, perTryTimeout: perTryTimeout)
    }

    /// Routes the request and gets attempt `n` a connection (the request complete at `now`).
    static func connect(_ m: inout Machine, attempt n: Int, now: NIODeadline = t0) -> Machine.Action {
        m.connectionReady(attempt: n, requestAllowed: { true }, requestComplete: true, now: now)
    }

    static func released(_ m: inout Machine, allowed: Bool = true, random: UInt64 = 0) -> Machine.Action {
        var r = ScriptedRandom([random])
        return m.failedAttemptReleased(retryAllowed: { allowed }, random: &r)
    }

    static func head(_ m: inout Machine, _ status: Int, allowed: Bool = true, random: UInt64 = 0) -> Machine.Action {
        var r = ScriptedRandom([random])
        return m.responseHeadReceived(status: status, headers: HTTPHeaders(), retryAllowed: { allowed }, random: &r)
    }

    // MARK: The plain proxied request

    @Test func plainRequestConnectsSendsAndReleases() {
        var m = Self.machine(nil)
        #expect(m.requestRouted() == .pickHostAndConnect(attempt: 1, releasingRetry: false))
        #expect(Self.connect(&m, attempt: 1) == .sendRequest(attempt: 1, armPerTryTimer: nil))
        #expect(m.requestEnded(requestComplete: true, now: Self.t0) == .none)
        #expect(Self.head(&m, 503) == .sendResponseHead(attempt: 1, .notRetried))
        #expect(m.responseEnded() == .releaseConnectionAfterResponse)
        #expect(m.abandoned() == .nothing)
    }

    @Test func plainRequestNeverReadsTheClock() {
        var m = Self.machine(nil)
        _ = m.requestRouted()
        var reads = 0
        let clock: () -> NIODeadline = {
            reads += 1
            return Self.t0
        }
        _ = m.connectionReady(attempt: 1, requestAllowed: { true }, requestComplete: true, now: clock())
        _ = m.requestEnded(requestComplete: true, now: clock())
        #expect(reads == 0)
    }

    // MARK: Retries

    @Test func retriesA5xxThenPassesTheSuccessOn() {
        var m = Self.machine("5xx", numRetries: 2)
        _ = m.requestRouted()
        _ = Self.connect(&m, attempt: 1)
        #expect(Self.head(&m, 503, random: 7) == .retryResponse(after: 7 * Self.ms))
        #expect(m.backOffElapsed() == .pickHostAndConnect(attempt: 2, releasingRetry: true))
        #expect(Self.connect(&m, attempt: 2) == .sendRequest(attempt: 2, armPerTryTimer: nil))
        #expect(Self.head(&m, 200) == .sendResponseHead(attempt: 2, .succeeded))
        #expect(m.attempts == 2)
        #expect(m.responseEnded() == .releaseConnectionAfterResponse)
    }

    @Test func retryLimitExceededPassesTheLast5xxOn() {
        var m = Self.machine("5xx", numRetries: 1)
        _ = m.requestRouted()
        _ = Self.connect(&m, attempt: 1)
        #expect(Self.head(&m, 503) == .retryResponse(after: 0))
        _ = m.backOffElapsed()
        _ = Self.connect(&m, attempt: 2)
        #expect(Self.head(&m, 503) == .sendResponseHead(attempt: 2, .limitExceeded))
    }

    @Test func connectFailureIsRetriedAfterTheBackOff() {
        var m = Self.machine("connect-failure")
        _ = m.requestRouted()
        #expect(m.connectionFailed(attempt: 1, timedOut: false)
            == .releaseFailedAttempt(.connectFailure(timedOut: false), held: .connectionWait))
        // The back-off window of the first retry is 25 ms: 13 % 25.
        #expect(Self.released(&m, random: 13) == .scheduleRetry(after: 13 * Self.ms))
        #expect(m.abandoned() == .scheduledRetry)
    }

    @Test func connectFailureRetriedThenSucceeds() {
        var m = Self.machine("connect-failure")
        _ = m.requestRouted()
        _ = m.connectionFailed(attempt: 1, timedOut: true)
        #expect(Self.released(&m) == .scheduleRetry(after: 0))
        #expect(m.backOffElapsed() == .pickHostAndConnect(attempt: 2, releasingRetry: true))
        // A late answer for the first attempt is stale.
        #expect(m.connectionFailed(attempt: 1, timedOut: false) == .none)
        #expect(Self.connect(&m, attempt: 1) == .releaseConnection)
        #expect(Self.connect(&m, attempt: 2) == .sendRequest(attempt: 2, armPerTryTimer: nil))
    }

    @Test func connectFailureNotRetriedWithoutPolicyAnswersWithTheReason() {
        var m = Self.machine(nil)
        _ = m.requestRouted()
        _ = m.connectionFailed(attempt: 1, timedOut: true)
        #expect(Self.released(&m) == .localReply(.failed(.connectFailure(timedOut: true), .notRetried), held: .nothing))
    }

    @Test func retryBreakerRefusalIsCountedAsOverflow() {
        var m = Self.machine("reset")
        _ = m.requestRouted()
        _ = Self.connect(&m, attempt: 1)
        #expect(m.upstreamReset() == .releaseFailedAttempt(.reset, held: .connection))
        #expect(Self.released(&m, allowed: false) == .localReply(.failed(.reset, .overflow), held: .nothing))
    }

    // MARK: Per-try timeouts

    @Test func perTryTimeoutStartsWithTheWholeRequestAndIsRetried() {
        var m = Self.machine("5xx", perTryTimeout: .milliseconds(100))
        _ = m.requestRouted()
        // The request is still arriving: no per-try deadline yet.
        #expect(m.connectionReady(attempt: 1, requestAllowed: { true }, requestComplete: false, now: Self.t0)
            == .sendRequest(attempt: 1, armPerTryTimer: nil))
        let end = Self.t0 + .milliseconds(5)
        #expect(m.requestEnded(requestComplete: true, now: end) == .armPerTryTimer(end + .milliseconds(100)))
        #expect(m.perTryTimeoutFired(attempt: 1, requestComplete: true, now: end + .milliseconds(100))
            == .releaseFailedAttempt(.perTryTimeout, held: .connection))
        #expect(Self.released(&m) == .scheduleRetry(after: 0))
        #expect(m.backOffElapsed() == .pickHostAndConnect(attempt: 2, releasingRetry: true))
        let t1 = end + .milliseconds(200)
        #expect(
            Self.connect(&m, attempt: 2, now: t1) == .sendRequest(attempt: 2, armPerTryTimer: t1 + .milliseconds(100)))
    }

    @Test func perTryTimeoutOfTheLastAttemptAnswers504() {
        var m = Self.machine("5xx", numRetries: 0, perTryTimeout: .milliseconds(100))
        _ = m.requestRouted()
        #expect(Self.connect(&m, attempt: 1) == .sendRequest(attempt: 1, armPerTryTimer: Self.t0 + .milliseconds(100)))
        _ = m.perTryTimeoutFired(attempt: 1, requestComplete: true, now: Self.t0 + .milliseconds(100))
        #expect(Self.released(&m) == .localReply(.failed(.perTryTimeout, .limitExceeded), held: .nothing))
    }

    @Test func perTryIdleTimerReArmsAfterActivity() {
        var m = Self.machine("5xx", perTryIdleTimeout: .milliseconds(50))
        _ = m.requestRouted()
        #expect(Self.connect(&m, attempt: 1) == .sendRequest(attempt: 1, armPerTryTimer: Self.t0 + .milliseconds(50)))
        #expect(m.tracksActivity)
        m.upstreamActivity(now: Self.t0 + .milliseconds(30))
        #expect(m.perTryTimeoutFired(attempt: 1, requestComplete: true, now: Self.t0 + .milliseconds(50))
            == .armPerTryTimer(Self.t0 + .milliseconds(80)))
        #expect(m.perTryTimeoutFired(attempt: 1, requestComplete: true, now: Self.t0 + .milliseconds(80))
            == .releaseFailedAttempt(.perTryIdleTimeout, held: .connection))
    }

    @Test func staleTimerOfAnEarlierAttemptDoesNothing() {
        var m = Self.machine("5xx", perTryTimeout: .milliseconds(100))
        _ = m.requestRouted()
        _ = Self.connect(&m, attempt: 1)
        _ = Self.head(&m, 503)
        _ = m.backOffElapsed()
        _ = Self.connect(&m, attempt: 2)
        #expect(m.perTryTimeoutFired(attempt: 1, requestComplete: true, now: Self.t0 + .seconds(1)) == .none)
    }

    // MARK: Route timeout, overflow, resets, the client going away

    @Test func routeTimeoutDuringBackOffEndsTheRequestAndGivesTheRetryBack() {
        var m = Self.machine("5xx", numRetries: 3)
        _ = m.requestRouted()
        _ = Self.connect(&m, attempt: 1)
        _ = Self.head(&m, 503, random: 20)
        #expect(m.routeTimeoutFired() == .scheduledRetry)
        // Never retried: the back-off ending late starts nothing.
        #expect(m.backOffElapsed() == .none)
        #expect(m.abandoned() == .nothing)
    }

    @Test func routeTimeoutWhileForwardingChargesTheConnection() {
        var m = Self.machine(nil)
        _ = m.requestRouted()
        _ = Self.connect(&m, attempt: 1)
        #expect(m.routeTimeoutFired() == .connection)
        #expect(m.upstreamReset() == .none)
    }

    @Test func overflowIsNeverRetried() {
        var m = Self.machine("5xx,reset,connect-failure", numRetries: 5)
        _ = m.requestRouted()
        #expect(m.overflowed() == .localReply(.overflow(requestBreaker: false), held: .connectionWait))
        #expect(m.backOffElapsed() == .none)
        #expect(m.abandoned() == .nothing)
    }

    @Test func maxRequestsOverflowOnAReadyConnectionIsNeverRetried() {
        var m = Self.machine("5xx", numRetries: 5)
        _ = m.requestRouted()
        #expect(m.connectionReady(attempt: 1, requestAllowed: { false }, requestComplete: true, now: Self.t0)
            == .localReply(.overflow(requestBreaker: true), held: .connectionWait))
        #expect(m.abandoned() == .nothing)
    }

    @Test func noHealthyHostAnswers503() {
        var m = Self.machine("5xx")
        _ = m.requestRouted()
        #expect(m.noHealthyHost() == .localReply(.noHealthyUpstream, held: .connectionWait))
    }

    @Test func resetAfterTheResponseStartedIsNotRetried() {
        var m = Self.machine("reset,5xx", numRetries: 3)
        _ = m.requestRouted()
        _ = Self.connect(&m, attempt: 1)
        #expect(Self.head(&m, 200) == .sendResponseHead(attempt: 1, .notRetried))
        #expect(m.upstreamReset() == .resetDownstream(held: .connection))
        #expect(m.abandoned() == .nothing)
    }

    @Test func resetBeforeTheResponseIsRetried() {
        var m = Self.machine("reset")
        _ = m.requestRouted()
        _ = Self.connect(&m, attempt: 1)
        #expect(m.upstreamReset() == .releaseFailedAttempt(.reset, held: .connection))
        #expect(Self.released(&m) == .scheduleRetry(after: 0))
    }

    @Test func downstreamGoneMidAttemptGivesBackWhatItHeld() {
        var waiting = Self.machine("5xx")
        _ = waiting.requestRouted()
        #expect(waiting.abandoned() == .connectionWait)
        // The connection that comes later goes back to the pool unused.
        #expect(Self.connect(&waiting, attempt: 1) == .releaseConnection)

        var forwarding = Self.machine("5xx")
        _ = forwarding.requestRouted()
        _ = Self.connect(&forwarding, attempt: 1)
        #expect(forwarding.abandoned() == .connection)
        #expect(Self.head(&forwarding, 200) == .none)
        #expect(forwarding.responseEnded() == .none)
    }

    @Test func bodyOutgrowingItsBufferStopsRetries() {
        var m = Self.machine("5xx", numRetries: 3)
        #expect(m.keepsBody)
        _ = m.requestRouted()
        _ = Self.connect(&m, attempt: 1)
        m.bodyOutgrewBuffer()
        #expect(!m.keepsBody)
        #expect(Self.head(&m, 503) == .sendResponseHead(attempt: 1, .notRetried))
    }

    // MARK: x-envoy-attempt-count

    @Test func attemptCountFollowsEachTry() {
        var m = Self.machine("5xx,connect-failure", numRetries: 3)
        var counts: [Int] = []
        _ = m.requestRouted()
        counts.append(m.attempts)
        _ = m.connectionFailed(attempt: 1, timedOut: false)
        _ = Self.released(&m)
        _ = m.backOffElapsed()
        counts.append(m.attempts)
        _ = Self.connect(&m, attempt: 2)
        _ = Self.head(&m, 502)
        _ = m.backOffElapsed()
        guard case .sendRequest(let sent, _) = Self.connect(&m, attempt: 3) else {
            Issue.record("attempt 3 not sent")
            return
        }
        counts.append(sent)
        #expect(Self.head(&m, 200) == .sendResponseHead(attempt: 3, .succeeded))
        #expect(counts == [1, 2, 3])
        #expect(m.attempts == 3)
    }
}
