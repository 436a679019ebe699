import Atomics

/// Envoy 1.40's local rate limit token bucket (its atomic, time-based bucket): tokens flow in continuously at
/// r = `tokens_per_fill` / `fill_interval`, never above `max_tokens`; the bucket starts full, and a request takes one
/// token or is limited. So over a window T at most max_tokens + r·T requests pass, and a steady load under r is never
/// limited.
///
/// The whole state is one number: the time at which the bucket would have been empty (`emptyAt`, seconds). The
/// tokens at `now` are min(max_tokens, (now − emptyAt) · r). A pure value over an injected clock; `SharedTokenBucket`
/// keeps `emptyAt` in one atomic word, so every worker takes from the same bucket without a lock.
struct TokenBucket: Equatable {
    let maxTokens: Double
    /// Tokens per second.
    let rate: Double

    init(maxTokens: UInt32, tokensPerFill: UInt32, fillIntervalNanoseconds: Int64) {
        self.maxTokens = Double(maxTokens)
        rate = Double(tokensPerFill) / (Double(fillIntervalNanoseconds) / 1e9)
    }

    /// `emptyAt` for a full bucket at `now`.
    func fullState(now: Double) -> Double { now - maxTokens / rate }

    func tokens(_ emptyAt: Double, now: Double) -> Double { min(maxTokens, max(0, (now - emptyAt) * rate)) }

    /// Takes one token at `now`: the new `emptyAt`, and whether the request may pass.
    func take(_ emptyAt: Double, now: Double) -> (Double, allowed: Bool) {
        let available = tokens(emptyAt, now: now)
        guard available >= 1 else { return (emptyAt, false) }
        return (now - (available - 1) / rate, true)
    }

    /// Seconds until the next whole token (0 while one is there): Envoy's `x-ratelimit-reset`, rounded up.
    func secondsUntilNextToken(_ emptyAt: Double, now: Double) -> Double {
        let available = tokens(emptyAt, now: now)
        return available >= 1 ? 0 : (1 - available) / rate
    }
}

/// A token bucket every worker takes from: `emptyAt` lives in one atomic word, updated by compare-and-swap.
final class SharedTokenBucket: Sendable {
    let bucket: TokenBucket
    private let emptyAt: ManagedAtomic<UInt64>
    /// The bucket's time zero, on the uptime clock (nanoseconds).
    private let start: UInt64

    init(_ bucket: TokenBucket, start: UInt64) {
        self.bucket = bucket
        self.start = start
        emptyAt = ManagedAtomic(bucket.fullState(now: 0).bitPattern)
    }

    private func seconds(_ now: UInt64) -> Double { Double(Int64(bitPattern: now &- start)) / 1e9 }

    func tryTake(now: UInt64) -> Bool {
        let t = seconds(now)
        var current = emptyAt.load(ordering: .relaxed)
        while true {
            let (next, allowed) = bucket.take(Double(bitPattern: current), now: t)
            guard allowed else { return false }
            let (exchanged, original) = emptyAt.compareExchange(
                expected: current, desired: next.bitPattern, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    /// Whole tokens left.
    func remaining(now: UInt64) -> Int {
        Int(bucket.tokens(Double(bitPattern: emptyAt.load(ordering: .relaxed)), now: seconds(now)))
    }

    /// Whole seconds until the next token, rounded up; 0 while a token is there.
    func secondsUntilNextToken(now: UInt64) -> Int {
        let s = bucket.secondsUntilNextToken(Double(bitPattern: emptyAt.load(ordering: .relaxed)), now: seconds(now))
        return Int(s.rounded(.up))
    }

    var maxTokens: Int { Int(bucket.maxTokens) }
}
