import Testing

@testable import Sidecar

/// The local rate limit's token bucket over an injected clock (nanoseconds since the bucket started).
@Suite struct TokenBucketTests {
    static let ms: Int64 = 1_000_000

    /// Drives `bucket` with one request at each of `times`; returns how many passed.
    static func passes(_ bucket: TokenBucket, at times: [Int64]) -> Int {
        var state = bucket.initialState
        var passed = 0
        for t in times {
            let (next, allowed) = bucket.take(state, now: t)
            state = next
            if allowed { passed += 1 }
        }
        return passed
    }

    @Test func startsFullAndRefillsAtWholeIntervals() {
        let b = TokenBucket(maxTokens: 3, tokensPerFill: 2, fillIntervalNanoseconds: 100 * Self.ms)
        var s = b.initialState
        var results: [Bool] = []
        for _ in 0..<4 {
            let (n, ok) = b.take(s, now: 10 * Self.ms)
            s = n
            results.append(ok)
        }
        #expect(results == [true, true, true, false])
        // 99 ms in: still no fill.
        #expect(b.take(s, now: 99 * Self.ms).allowed == false)
        // The first fill adds tokens_per_fill.
        let (afterFill, ok) = b.take(s, now: 100 * Self.ms)
        #expect(ok)
        #expect(afterFill.tokens == 1)
        // Many idle intervals never overfill: capped at max_tokens.
        #expect(b.refilled(afterFill, now: 10_000 * Self.ms).tokens == 3)
    }

    /// The seed's claim: with rate r and burst b, over a window T at most b + r·T requests pass (whole fills in the
    /// window, rounded up), however hard the bucket is hammered.
    @Test(arguments: [(5, 1, 100), (10, 5, 50), (1, 1, 1000), (100, 10, 200)])
    func neverMoreThanBurstPlusRateTimesWindow(burst: Int, perFill: Int, intervalMs: Int) {
        let b = TokenBucket(maxTokens: UInt32(burst), tokensPerFill: UInt32(perFill),
                            fillIntervalNanoseconds: Int64(intervalMs) * Self.ms)
        let window: Int64 = 3_000 * Self.ms
        // A request every 0.5 ms for 3 s: far more than the rate.
        let times = Array(stride(from: Int64(0), to: window, by: Int(Self.ms / 2)))
        let passed = Self.passes(b, at: times)
        let fills = (window + Int64(intervalMs) * Self.ms - 1) / (Int64(intervalMs) * Self.ms)
        let bound = burst + perFill * Int(fills)
        #expect(passed <= bound)
        // And the bucket does give out what it holds: at least the fills that completed inside the window.
        #expect(passed >= burst + perFill * (Int(fills) - 1))
    }

    /// A steady load under the rate is never limited, even with no burst to spare. The rate is what a fill can
    /// really add: a bucket smaller than `tokens_per_fill` caps it at `max_tokens` per interval.
    @Test(arguments: [(1, 1, 100), (2, 10, 1000), (5, 5, 50)])
    func steadyLoadUnderTheRateIsNeverLimited(burst: Int, perFill: Int, intervalMs: Int) {
        let b = TokenBucket(maxTokens: UInt32(burst), tokensPerFill: UInt32(perFill),
                            fillIntervalNanoseconds: Int64(intervalMs) * Self.ms)
        // 90 % of the rate, evenly spaced, for 10 s, starting right after the start (the burst drained first).
        let ratePerSecond = Double(min(burst, perFill)) * 1000 / Double(intervalMs)
        let gap = Int64(1e9 / (ratePerSecond * 0.9))
        var state = b.initialState
        for _ in 0..<burst { state = b.take(state, now: 0).0 }
        var limited = 0
        var t = Int64(intervalMs) * Self.ms
        while t < 10_000 * Self.ms {
            let (n, ok) = b.take(state, now: t)
            state = n
            if !ok { limited += 1 }
            t += gap
        }
        #expect(limited == 0)
    }

    @Test func sharedBucketIsOneBucketForEveryTaker() {
        let b = TokenBucket(maxTokens: 4, tokensPerFill: 1, fillIntervalNanoseconds: 1_000 * Self.ms)
        let shared = SharedTokenBucket(b, start: 1_000)
        let results = (0..<6).map { _ in shared.tryTake(now: 2_000) }
        #expect(results == [true, true, true, true, false, false])
        #expect(shared.remaining(now: 2_000) == 0)
        #expect(shared.secondsUntilNextFill(now: 1_000 + 400 * UInt64(Self.ms)) == 1)
        #expect(shared.tryTake(now: 1_000 + 1_000 * UInt64(Self.ms)))
    }

    @Test func packedStateRoundTrips() {
        let s = TokenBucket.State(fills: 0xdead_beef, tokens: 0x1234_5678)
        #expect(TokenBucket.State(packed: s.packed) == s)
    }
}
