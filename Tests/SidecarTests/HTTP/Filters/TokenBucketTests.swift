import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// The local rate limit's token bucket over an injected clock (seconds since the bucket started).
@Suite struct TokenBucketTests {
    static func bucket(_ burst: Int, _ perFill: Int, _ intervalMs: Int) -> TokenBucket {
        TokenBucket(maxTokens: UInt32(burst), tokensPerFill: UInt32(perFill),
                    fillIntervalNanoseconds: Int64(intervalMs) * 1_000_000)
    }

    /// Drives `bucket` (full at 0) with one request at each of `times`; returns how many passed.
    static func passes(_ bucket: TokenBucket, at times: [Double]) -> Int {
        var state = bucket.fullState(now: 0)
        var passed = 0
        for t in times {
            let (next, allowed) = bucket.take(state, now: t)
            state = next
            if allowed { passed += 1 }
        }
        return passed
    }

    @Test func startsFullAndRefillsContinuously() {
        let b = Self.bucket(3, 2, 100)  // 20 tokens/s
        var s = b.fullState(now: 0)
        var results: [Bool] = []
        for _ in 0..<4 {
            let (n, ok) = b.take(s, now: 0.010)
            s = n
            results.append(ok)
        }
        #expect(results == [true, true, true, false])
        // A token takes 50 ms to flow in: not yet at 59 ms, there at 60 ms (10 ms + 50 ms).
        #expect(b.take(s, now: 0.059).allowed == false)
        #expect(b.take(s, now: 0.0601).allowed)
        // Idle time never overfills: capped at max_tokens.
        #expect(b.tokens(s, now: 100) == 3)
    }

    /// The seed's claim: with rate r and burst b, over a window T at most b + r·T requests pass, however hard the
    /// bucket is hammered; and it hands out about that many.
    @Test(arguments: [(5, 1, 100), (10, 5, 50), (1, 1, 1000), (100, 10, 200), (5, 10, 1000)])
    func neverMoreThanBurstPlusRateTimesWindow(burst: Int, perFill: Int, intervalMs: Int) {
        let b = Self.bucket(burst, perFill, intervalMs)
        let window = 3.0
        let times = Array(stride(from: 0.0, to: window, by: 0.0005))
        let passed = Self.passes(b, at: times)
        let bound = Double(burst) + b.rate * window
        #expect(Double(passed) <= bound)
        #expect(Double(passed) >= bound - 2)
    }

    /// A steady load under the rate is never limited, even once the burst is spent.
    @Test(arguments: [(1, 1, 100), (2, 10, 1000), (5, 5, 50), (1, 3, 1000)])
    func steadyLoadUnderTheRateIsNeverLimited(burst: Int, perFill: Int, intervalMs: Int) {
        let b = Self.bucket(burst, perFill, intervalMs)
        var state = b.fullState(now: 0)
        for _ in 0..<burst { state = b.take(state, now: 0).0 }
        let gap = 1 / (b.rate * 0.9)
        var limited = 0
        var t = gap
        while t < 10 {
            let (n, ok) = b.take(state, now: t)
            state = n
            if !ok { limited += 1 }
            t += gap
        }
        #expect(limited == 0)
    }

    @Test func resetIsZeroWhileATokenIsLeftThenTheWaitForTheNext() {
        let b = Self.bucket(3, 1, 2000)  // 0.5 tokens/s
        var s = b.fullState(now: 0)
        #expect(b.secondsUntilNextToken(s, now: 0) == 0)
        for _ in 0..<3 { s = b.take(s, now: 0).0 }
        #expect(b.secondsUntilNextToken(s, now: 0) == 2)
        #expect(abs(b.secondsUntilNextToken(s, now: 1.2) - 0.8) < 1e-9)
    }

    @Test func sharedBucketIsOneBucketForEveryTaker() {
        let shared = SharedTokenBucket(Self.bucket(4, 1, 1000), start: 1_000)
        let results = (0..<6).map { _ in shared.tryTake(now: 2_000) }
        #expect(results == [true, true, true, true, false, false])
        #expect(shared.remaining(now: 2_000) == 0)
        #expect(shared.secondsUntilNextToken(now: 1_000 + 400_000_000) == 1)
        #expect(shared.tryTake(now: 1_000 + 1_001_000_000))
    }
}
