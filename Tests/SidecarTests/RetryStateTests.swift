import NIOHTTP1
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// Retry decisions as Envoy 1.40 makes them: the ENVOY-SEMANTICS.md rows about retries, each `retry_on`
/// condition, the `x-envoy-*` request headers and the back-off sequence.
@Suite struct RetryStateTests {
    // MARK: Helpers

    static func policy(
        _ retryOn: String, numRetries: Int = 1, codes: [Int] = [], retriableHeaders: [HeaderMatcher] = [],
        requestHeaders: [HeaderMatcher] = []
    ) -> RetryPolicyConfig {
        var p = RetryPolicyConfig()
        let (on, unknown) = RetryPolicyConfig.RetryOn.parse(Substring(retryOn))
        precondition(unknown.isEmpty, "unknown retry_on \(unknown)")
        p.retryOn = on
        p.numRetries = numRetries
        p.retriableStatusCodes = codes
        p.retriableHeaders = retriableHeaders
        p.retriableRequestHeaders = requestHeaders
        return p
    }

    static func exact(_ name: String, _ value: String) -> HeaderMatcher {
        HeaderMatcher(
            name: name, rule: .string(StringMatcher(kind: .exact(value), ignoreCase: false)), invert: false,
            treatMissingAsEmpty: false)
    }

    static func present(_ name: String) -> HeaderMatcher {
        HeaderMatcher(name: name, rule: .present(true), invert: false, treatMissingAsEmpty: false)
    }

    static func response(_ status: Int, _ headers: [(String, String)] = []) -> RetryState.Outcome {
        .response(status: status, headers: HTTPHeaders(headers))
    }

    static func state(
        _ route: RetryPolicyConfig?, _ headers: [(String, String)] = [], honor: Bool = true
    ) -> RetryState? {
        RetryState(route: route, requestHeaders: HTTPHeaders(headers), honorRequestHeaders: honor)
    }

    /// Feeds outcomes in order with a circuit breaker that always admits and no jitter; returns each decision.
    static func run(_ state: inout RetryState, _ outcomes: [RetryState.Outcome]) -> [RetryState.Decision] {
        var random = ScriptedRandom([0])
        return outcomes.map { state.decide($0, retryAllowed: { true }, random: &random) }
    }

    /// Whether a fresh state for `route` retries `outcome` once.
    static func retries(_ route: RetryPolicyConfig, _ outcome: RetryState.Outcome) -> Bool {
        guard var s = state(route) else { return false }
        if case .retry = run(&s, [outcome])[0] { return true }
        return false
    }

    static let retry0 = RetryState.Decision.retry(backOffNanos: 0)
    static let ms: Int64 = 1_000_000

    // MARK: ENVOY-SEMANTICS.md rows

    @Test func withoutRetryPolicyUpstream503IsPassedThroughAfterOneAttempt() {
        #expect(Self.state(nil) == nil)
        #expect(Self.state(RetryPolicyConfig()) == nil)
    }

    @Test func fiveXXAndGatewayErrorSucceedAfterThreeAttemptsWhenUpstreamFailsTwice() throws {
        var s = try #require(Self.state(Self.policy("5xx,gateway-error", numRetries: 3)))
        let d = Self.run(&s, [Self.response(503), Self.response(503), Self.response(200)])
        #expect(d == [Self.retry0, Self.retry0, .done])
        #expect(s.attempts == 3)
        #expect(s.retried)
    }

    @Test func alwaysFailingUpstreamGivesTheLast503AfterFourAttempts() throws {
        var s = try #require(Self.state(Self.policy("5xx,gateway-error", numRetries: 3)))
        let d = Self.run(&s, Array(repeating: Self.response(503), count: 4))
        #expect(d == [Self.retry0, Self.retry0, Self.retry0, .limitExceeded])
        #expect(s.attempts == 4)
    }

    @Test func notFoundIsNotRetried() throws {
        var s = try #require(Self.state(Self.policy("5xx,gateway-error", numRetries: 3)))
        #expect(Self.run(&s, [Self.response(404)]) == [.done])
        #expect(s.attempts == 1)
        #expect(!s.retried)
    }

    @Test func gatewayErrorRetries502But500() {
        let p = Self.policy("gateway-error")
        #expect(!Self.retries(p, Self.response(500)))
        #expect(Self.retries(p, Self.response(502)))
    }

    @Test func retryHeadersFromAnUntrustedClientAreIgnored() {
        let headers = [("x-envoy-retry-on", "5xx"), ("x-envoy-max-retries", "3")]
        #expect(Self.state(nil, headers, honor: false) == nil)
        let trusted = Self.state(nil, headers, honor: true)
        #expect(trusted?.policy.retryOn == .fiveXX)
        #expect(trusted?.policy.numRetries == 3)
    }

    @Test func numRetriesDefaultsToOne() throws {
        var p = RetryPolicyConfig()
        p.retryOn = .fiveXX
        var s = try #require(Self.state(p))
        #expect(Self.run(&s, [Self.response(503), Self.response(503)]) == [Self.retry0, .limitExceeded])
    }

    @Test func ourOwnCircuitBreakerOverflowIsNeverRetried() throws {
        var everything = RetryPolicyConfig()
        everything.retryOn = RetryPolicyConfig.RetryOn(rawValue: UInt32.max)
        var s = try #require(Self.state(everything))
        #expect(Self.run(&s, [.overflow]) == [.done])
    }

    /// Envoy 1.40 dropped the old "never retry x-envoy-overloaded" rule from `wouldRetryFromHeaders`: an
    /// upstream's 503 with the header took three attempts under `5xx`, `num_retries: 2`.
    @Test func upstream503CarryingOverloadedIsRetriedLikeAny503() throws {
        var s = try #require(Self.state(Self.policy("5xx", numRetries: 2)))
        let overloaded = Self.response(503, [("x-envoy-overloaded", "true")])
        #expect(Self.run(&s, [overloaded, overloaded, overloaded]) == [Self.retry0, Self.retry0, .limitExceeded])
    }

    // MARK: retry_on conditions

    @Test func eachConditionRetriesWhatEnvoyRetriesAndNothingElse() {
        typealias Case = (retryOn: String, outcome: RetryState.Outcome, retried: Bool, what: String)
        let yes = [("x-upstream-retry", "yes")]
        let cases: [Case] = [
            ("5xx", Self.response(500), true, "500"), ("5xx", Self.response(503), true, "503"),
            ("5xx", Self.response(599), true, "599"), ("5xx", Self.response(404), false, "404"),
            ("5xx", Self.response(409), false, "409"), ("5xx", Self.response(200), false, "200"),
            ("5xx", .reset, true, "reset"), ("5xx", .connectFailure, true, "connect failure"),
            ("5xx", .perTryTimeout, true, "per-try timeout"),
            ("gateway-error", Self.response(502), true, "502"), ("gateway-error", Self.response(503), true, "503"),
            ("gateway-error", Self.response(504), true, "504"), ("gateway-error", Self.response(500), false, "500"),
            ("gateway-error", Self.response(501), false, "501"), ("gateway-error", .reset, true, "reset"),
            ("gateway-error", .connectFailure, true, "connect failure"),
            ("gateway-error", .perTryTimeout, true, "per-try timeout"),
            ("reset", .reset, true, "reset"), ("reset", .connectFailure, true, "connect failure"),
            ("reset", .perTryTimeout, true, "per-try timeout"), ("reset", Self.response(503), false, "503"),
            ("connect-failure", .connectFailure, true, "connect failure"),
            ("connect-failure", .reset, false, "reset"), ("connect-failure", .perTryTimeout, false, "timeout"),
            ("connect-failure", Self.response(503), false, "503"),
            ("reset-before-request", .connectFailure, true, "connect failure"),
            ("reset-before-request", .reset, false, "reset after the request started"),
            ("reset-before-request", .perTryTimeout, false, "per-try timeout"),
            ("retriable-4xx", Self.response(409), true, "409"), ("retriable-4xx", Self.response(400), false, "400"),
            ("retriable-4xx", Self.response(503), false, "503"), ("retriable-4xx", .reset, false, "reset"),
            ("retriable-4xx", .connectFailure, false, "connect failure"),
            ("refused-stream", .reset, false, "reset (HTTP/1 has no REFUSED_STREAM)"),
            ("refused-stream", .connectFailure, false, "connect failure"),
            ("refused-stream", Self.response(503), false, "503"),
            ("retriable-headers", Self.response(200, yes), true, "matching header"),
            ("retriable-headers", Self.response(200, [("x-upstream-retry", "no")]), false, "other value"),
            ("retriable-headers", Self.response(503), false, "no header"),
            ("cancelled", Self.response(200, [("grpc-status", "1")]), true, "grpc 1"),
            ("cancelled", Self.response(200, [("grpc-status", "14")]), false, "grpc 14"),
            ("deadline-exceeded", Self.response(200, [("grpc-status", "4")]), true, "grpc 4"),
            ("deadline-exceeded", Self.response(200, [("grpc-status", "1")]), false, "grpc 1"),
            ("resource-exhausted", Self.response(200, [("grpc-status", "8")]), true, "grpc 8"),
            ("resource-exhausted", Self.response(200, [("grpc-status", "13")]), false, "grpc 13"),
            ("internal", Self.response(200, [("grpc-status", "13")]), true, "grpc 13"),
            ("internal", Self.response(200, [("grpc-status", "14")]), false, "grpc 14"),
            ("unavailable", Self.response(200, [("grpc-status", "14")]), true, "grpc 14"),
            ("unavailable", Self.response(200, [("grpc-status", "0")]), false, "grpc 0"),
            ("unavailable", Self.response(200, [("grpc-status", "14x")]), false, "grpc 14x"),
            ("unavailable", Self.response(503), false, "503 without grpc-status"),
            ("unavailable", .reset, false, "reset"),
        ]
        for c in cases {
            let p = Self.policy(c.retryOn, retriableHeaders: [Self.exact("x-upstream-retry", "yes")])
            #expect(Self.retries(p, c.outcome) == c.retried, "retry_on \(c.retryOn), \(c.what)")
            #expect(!Self.retries(p, .overflow), "retry_on \(c.retryOn), overflow")
        }
    }

    @Test func retriableStatusCodesNeedsBothTheConditionAndTheList() {
        #expect(Self.retries(Self.policy("retriable-status-codes", codes: [418]), Self.response(418)))
        #expect(!Self.retries(Self.policy("retriable-status-codes", codes: [418]), Self.response(503)))
        #expect(!Self.retries(Self.policy("retriable-status-codes"), Self.response(418)))
        #expect(!Self.retries(Self.policy("5xx", codes: [418]), Self.response(418)))
        // A per-try timeout is a local reset, not a 504 response (checked on Envoy 1.40).
        #expect(!Self.retries(Self.policy("retriable-status-codes", codes: [504]), .perTryTimeout))
        #expect(Self.retries(Self.policy("retriable-status-codes", codes: [504]), Self.response(504)))
    }

    @Test func retriableHeadersCanMatchTheResponseStatus() {
        let p = Self.policy("retriable-headers", retriableHeaders: [Self.exact(":status", "503")])
        #expect(Self.retries(p, Self.response(503)))
        #expect(!Self.retries(p, Self.response(502)))
    }

    @Test func upstreamRateLimitedResponsesAreRetriedOnlyUnderEnvoyRatelimited() {
        let limited = [("x-envoy-ratelimited", "true")]
        #expect(!Self.retries(Self.policy("5xx"), Self.response(503, limited)))
        #expect(Self.retries(Self.policy("5xx,envoy-ratelimited"), Self.response(429, limited)))
        // Envoy 1.40 retried even a 200 carrying the header, and a plain 503 still under 5xx.
        #expect(Self.retries(Self.policy("envoy-ratelimited"), Self.response(200, limited)))
        #expect(Self.retries(Self.policy("5xx,envoy-ratelimited"), Self.response(503)))
        #expect(!Self.retries(Self.policy("envoy-ratelimited"), Self.response(503)))
    }

    @Test func tooEarlyIsRetriedAtOnceUnlessTheRequestWasEarlyData() throws {
        let p = Self.policy("5xx,retriable-status-codes", numRetries: 2, codes: [425])
        var s = try #require(Self.state(p))
        var random = ScriptedRandom([7])
        #expect(s.decide(Self.response(425), retryAllowed: { true }, random: &random) == Self.retry0)
        // The immediate retry did not use up the first back-off window: the next wait is 7 % 25 ms.
        let next = s.decide(Self.response(503), retryAllowed: { true }, random: &random)
        #expect(next == .retry(backOffNanos: 7 * Self.ms))

        var early = try #require(Self.state(p, [("early-data", "1")]))
        #expect(Self.run(&early, [Self.response(425)]) == [.done])
    }

    // MARK: Request headers

    @Test func requestRetryOnIsAddedToTheRoutePolicyOnlyWhenTrusted() {
        let p = Self.policy("gateway-error", numRetries: 1)
        let h = [("x-envoy-retry-on", "5xx")]
        #expect(Self.state(p, h, honor: true)?.policy.retryOn == [.gatewayError, .fiveXX])
        #expect(Self.state(p, h, honor: false)?.policy.retryOn == .gatewayError)
        var trusted = Self.state(p, h, honor: true)!
        #expect(Self.run(&trusted, [Self.response(500)]) == [Self.retry0])
        var untrusted = Self.state(p, h, honor: false)!
        #expect(Self.run(&untrusted, [Self.response(500)]) == [.done])
    }

    @Test func maxRetriesHeaderReplacesNumRetries() throws {
        let p = Self.policy("5xx", numRetries: 1)
        var s = try #require(Self.state(p, [("x-envoy-max-retries", "3")]))
        #expect(s.policy.numRetries == 3)
        let d = Self.run(&s, Array(repeating: Self.response(503), count: 4))
        #expect(d == [Self.retry0, Self.retry0, Self.retry0, .limitExceeded])
        #expect(Self.state(p, [("x-envoy-max-retries", "3")], honor: false)?.policy.numRetries == 1)
        #expect(Self.state(Self.policy("5xx", numRetries: 5), [("x-envoy-max-retries", "0")])?.policy.numRetries == 0)
    }

    /// `absl::SimpleAtoi` into a `uint64_t`, then stored in a `uint32_t`; every row was checked on Envoy 1.40.
    @Test func maxRetriesHeaderIsParsedLikeEnvoy() {
        let rows: [(value: [String], retries: Int)] = [
            (["abc"], 1), (["-1"], 1), (["2x"], 1), ([""], 1), ([" 2 "], 2), (["+2"], 2), (["0"], 0),
            (["1", "2"], 1), (["4294967297"], 1), (["4294967296"], 0), (["18446744073709551616"], 1),
        ]
        for row in rows {
            let headers = row.value.map { ("x-envoy-max-retries", $0) }
            #expect(Self.state(Self.policy("5xx"), headers)?.policy.numRetries == row.retries, "\(row.value)")
        }
    }

    @Test func maxRetriesHeaderAloneDoesNotEnableRetries() {
        #expect(Self.state(nil, [("x-envoy-max-retries", "3")]) == nil)
    }

    @Test func retryOnHeaderTakesKnownHTTPNamesOnly() {
        #expect(Self.state(nil, [("x-envoy-retry-on", "bogus, 5xx ,")])?.policy.retryOn == .fiveXX)
        #expect(
            Self.state(nil, [("x-envoy-retry-on", "reset"), ("x-envoy-retry-on", "5xx")])?.policy.retryOn
                == [.reset, .fiveXX])
        #expect(Self.state(nil, [("x-envoy-retry-on", "bogus")]) == nil)
        #expect(Self.state(nil, [("x-envoy-retry-on", "5XX")]) == nil)
        #expect(Self.state(nil, [("x-envoy-retry-on", "unavailable")]) == nil)
        #expect(Self.state(nil, [("x-envoy-retry-grpc-on", "unavailable")])?.policy.retryOn == .grpcUnavailable)
        #expect(Self.state(nil, [("x-envoy-retry-grpc-on", "5xx")]) == nil)
    }

    @Test func retriableStatusCodesHeaderAddsCodes() {
        let h = [("x-envoy-retry-on", "retriable-status-codes"), ("x-envoy-retriable-status-codes", "400, 418,x,")]
        var s = Self.state(Self.policy("5xx", codes: [409]), h)!
        #expect(s.policy.retriableStatusCodes == [409, 400, 418])
        #expect(Self.run(&s, [Self.response(418)]) == [Self.retry0])
        #expect(Self.state(Self.policy("5xx", codes: [409]), h, honor: false)?.policy.retriableStatusCodes == [409])
    }

    @Test func retriableHeaderNamesHeaderAddsPresenceMatchers() {
        let h = [("x-envoy-retry-on", "retriable-headers"), ("x-envoy-retriable-header-names", "x-bar, X-Foo")]
        var s = Self.state(nil, h)!
        #expect(s.policy.retriableHeaders.map(\.name) == ["x-bar", "x-foo"])
        #expect(Self.run(&s, [Self.response(200, [("x-foo", "1")])]) == [Self.retry0])
        var other = Self.state(nil, h)!
        #expect(Self.run(&other, [Self.response(200, [("x-baz", "1")])]) == [.done])
    }

    @Test func retriableRequestHeadersGateEveryCondition() {
        let p = Self.policy("5xx", numRetries: 2, requestHeaders: [Self.present("x-retry-ok")])
        #expect(Self.state(p) == nil)
        #expect(Self.state(p, [("x-retry-ok", "1")])?.policy.numRetries == 2)
        // The gate applies after the header conditions are merged: they cannot open it.
        #expect(Self.state(p, [("x-envoy-retry-on", "5xx")]) == nil)
    }

    @Test func retriableRequestHeadersSeeTheMethodThroughTheRouteRequest() {
        let p = Self.policy("5xx", requestHeaders: [Self.exact(":method", "GET")])
        let get = RouteRequest(method: "GET", path: "/", authority: "a")
        let post = RouteRequest(method: "POST", path: "/", authority: "a")
        #expect(RetryState(route: p, request: get, honorRequestHeaders: false) != nil)
        #expect(RetryState(route: p, request: post, honorRequestHeaders: false) == nil)
    }

    @Test func perTryTimeoutComesFromPolicyOrTrustedHeaderAndYieldsToTheGlobalTimeout() {
        var p = RetryPolicyConfig()
        p.perTryTimeout = .seconds(2)
        func perTry(_ headers: [(String, String)], honor: Bool = true, global: ProtoDuration = .seconds(15))
            -> ProtoDuration?
        {
            RetryState.perTryTimeout(
                route: p, requestHeaders: HTTPHeaders(headers), honorRequestHeaders: honor, globalTimeout: global)
        }
        let h = [("x-envoy-upstream-rq-per-try-timeout-ms", "100")]
        #expect(perTry([]) == .seconds(2))
        #expect(perTry(h) == .milliseconds(100))
        #expect(perTry(h, honor: false) == .seconds(2))
        #expect(perTry([("x-envoy-upstream-rq-per-try-timeout-ms", "abc")]) == .seconds(2))
        #expect(perTry([("x-envoy-upstream-rq-per-try-timeout-ms", "0")]) == nil)
        #expect(perTry(h, global: .milliseconds(100)) == nil)
        #expect(perTry([], global: .seconds(1)) == nil)
        #expect(perTry([], global: .seconds(0)) == .seconds(2))
        #expect(
            RetryState.perTryTimeout(
                route: nil, requestHeaders: HTTPHeaders(h), honorRequestHeaders: true, globalTimeout: .seconds(15))
                == .milliseconds(100))
        let s = Self.state(Self.policy("5xx"), h)
        #expect(s?.policy.perTryTimeout == .milliseconds(100))
    }

    @Test func everyRetryHeaderIsListedForRemovalUpstream() {
        for name in [
            "x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries", "x-envoy-retriable-status-codes",
            "x-envoy-retriable-header-names", "x-envoy-upstream-rq-per-try-timeout-ms",
        ] {
            #expect(RetryState.consumedRequestHeaders.contains(name), "\(name)")
        }
    }

    // MARK: Back-off

    /// Retry n waits `random % min(25 ms × 2^(n-1), 250 ms)`: a random value equal to the window waits 0,
    /// one below it waits window − 1 ms. Envoy's docs' `(2^n − 1) × 25 ms` would make the second window 75.
    @Test func backOffWindowsDoubleFromBaseUpToTenTimesBase() throws {
        let windows: [UInt64] = [25, 50, 100, 200, 250, 250]
        var p = Self.policy("5xx", numRetries: windows.count)

        var s = try #require(Self.state(p))
        var atWindow = ScriptedRandom(windows)
        for _ in windows {
            #expect(s.decide(Self.response(503), retryAllowed: { true }, random: &atWindow) == Self.retry0)
        }

        s = try #require(Self.state(p))
        var belowWindow = ScriptedRandom(windows.map { $0 - 1 })
        for w in windows {
            let d = s.decide(Self.response(503), retryAllowed: { true }, random: &belowWindow)
            #expect(d == .retry(backOffNanos: Int64(w - 1) * Self.ms))
        }

        p.backOffBase = .milliseconds(10)
        p.backOffMax = .milliseconds(30)
        s = try #require(Self.state(p))
        var big = ScriptedRandom([1_000_000_049])
        let waits = (0..<4).map { _ in s.decide(Self.response(503), retryAllowed: { true }, random: &big) }
        let expected: [Int64] = [9, 9, 29, 29]
        #expect(waits == expected.map { .retry(backOffNanos: $0 * Self.ms) })
    }

    @Test func staticBackOffMatchesTheSequenceOfAState() throws {
        var p = Self.policy("5xx", numRetries: 8)
        p.backOffBase = .milliseconds(100)
        var s = try #require(Self.state(p))
        let values: [UInt64] = [123_456_789, 987_654_321, 555_555, 31_337, 999_999_999, 42, 7_777_777, 1]
        var a = ScriptedRandom(values)
        var b = ScriptedRandom(values)
        for attempt in 1...values.count {
            let fromState = s.decide(Self.response(503), retryAllowed: { true }, random: &a)
            let alone = RetryState.backOff(
                attempt: attempt, base: p.backOffBase, max: p.effectiveBackOffMax, random: &b)
            #expect(fromState == .retry(backOffNanos: alone), "attempt \(attempt)")
            // Default max is 10 × base: windows 100, 200, 400, 800, 1000, 1000 ms.
            #expect(alone < Int64(min(100 << (attempt - 1), 1000)) * Self.ms, "attempt \(attempt)")
        }
    }

    @Test func backOffBaseBelowOneMillisecondCountsAsOne() {
        var random = ScriptedRandom([5])
        let wait = RetryState.backOff(
            attempt: 1, base: ProtoDuration(nanoseconds: 10), max: ProtoDuration(nanoseconds: 10), random: &random)
        #expect(wait == 0)
    }

    // MARK: Limits

    @Test func circuitBreakerRefusalUsesUpARetryAndIsNotALimitExceeded() throws {
        var s = try #require(Self.state(Self.policy("5xx", numRetries: 2)))
        var random = ScriptedRandom([0])
        var asked = 0
        let refuse: () -> Bool = {
            asked += 1
            return false
        }
        #expect(s.decide(Self.response(503), retryAllowed: refuse, random: &random) == .budgetExhausted)
        #expect(asked == 1)
        #expect(s.attempts == 1)
        #expect(!s.retried)
        // `shouldRetry` took the retry off `retries_remaining_` before asking the breaker: one is left.
        #expect(s.decide(Self.response(503), retryAllowed: { true }, random: &random) == Self.retry0)
        #expect(s.decide(Self.response(503), retryAllowed: refuse, random: &random) == .limitExceeded)
        #expect(s.decide(Self.response(200), retryAllowed: refuse, random: &random) == .done)
        #expect(asked == 1, "the breaker is asked only when a retry would start")
        #expect(s.attempts == 2)
    }
}
