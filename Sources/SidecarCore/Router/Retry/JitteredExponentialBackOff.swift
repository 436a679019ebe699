/// Envoy's `JitteredExponentialBackOffStrategy` (source/common/common/backoff_strategy.cc), the back-off
/// between retries: full jitter over a window that starts at the base interval and doubles per retry until
/// it reaches the maximum.
///
/// Envoy works in whole milliseconds, so this does too: retry `n` (1-based) waits `random % window(n)` ms
/// with `window(n) = min(base × 2^(n-1), max)`. This is what Envoy 1.40 runs; its router documentation still
/// gives the older `[0, (2^N − 1) × base)` range of the pre-1.13 `JitteredBackOffStrategy`. Measured on Envoy
/// 1.40 (base 25 ms, 300 requests, three retries each) the longest waits were 28, 55 and 104 ms: windows of
/// 25, 50 and 100 ms plus scheduling, not 25, 75 and 175 ms.
package struct JitteredExponentialBackOff: Sendable {
    package let baseMilliseconds: UInt64
    package let maxMilliseconds: UInt64
    /// `next_interval_`: the window of the next retry.
    private var nextInterval: UInt64

    /// `base` below 1 ms counts as 1 ms and `max` below `base` as `base`: Envoy's `RetryPolicyImpl` keeps the
    /// base at least 1 ms and rejects a smaller maximum in config, so the strategy never sees either.
    package init(base: ProtoDuration, max: ProtoDuration) {
        baseMilliseconds = UInt64(Swift.max(base.milliseconds, 1))
        maxMilliseconds = Swift.max(UInt64(Swift.max(max.milliseconds, 0)), baseMilliseconds)
        nextInterval = baseMilliseconds
    }

    /// `nextBackOffMs()`: the wait before the next retry, in nanoseconds (Envoy's milliseconds, scaled).
    package mutating func next<R: RandomSource>(random: inout R) -> Int64 {
        let window = nextInterval
        // Double until doubling would reach past `max` (`doubling_limit_ = max / 2`), then stay at `max`.
        nextInterval = nextInterval < maxMilliseconds / 2 ? nextInterval * 2 : maxMilliseconds
        return Int64(random.next() % window) * 1_000_000
    }

    /// The window of retry `attempt` (1-based) in milliseconds: `min(base × 2^(attempt-1), max)`, the same
    /// sequence `next` walks through.
    package static func windowMilliseconds(attempt: Int, baseMilliseconds: UInt64, maxMilliseconds: UInt64) -> UInt64 {
        var window = baseMilliseconds
        var n = 1
        while n < attempt && window < maxMilliseconds {
            window = window < maxMilliseconds / 2 ? window * 2 : maxMilliseconds
            n += 1
        }
        return window
    }
}
