import Atomics

/// Envoy's local rate limit token bucket: it starts full (`max_tokens`), and every `fill_interval` it gains
/// `tokens_per_fill`, never above `max_tokens`; a request takes one token or is limited. Fills happen at whole
/// intervals since the bucket was made, so over a window T at most max_tokens + tokens_per_fill · ⌈T / interval⌉
/// requests pass.
///
/// A pure value over an injected clock (nanoseconds since the bucket's start): `SharedTokenBucket` keeps its state
/// in one atomic word so every worker takes from the same bucket without a lock.
struct TokenBucket: Equatable {
    let maxTokens: UInt32
    let tokensPerFill: UInt32
    let fillIntervalNanoseconds: Int64

    /// The bucket's state: the whole intervals that had elapsed when it was last updated, and its tokens.
    struct State: Equatable {
        var fills: UInt32
        var tokens: UInt32

        var packed: UInt64 { UInt64(fills) << 32 | UInt64(tokens) }
        init(fills: UInt32, tokens: UInt32) {
            self.fills = fills
            self.tokens = tokens
        }
        init(packed: UInt64) {
            fills = UInt32(truncatingIfNeeded: packed >> 32)
            tokens = UInt32(truncatingIfNeeded: packed)
        }
    }

    var initialState: State { State(fills: 0, tokens: maxTokens) }

    /// The state at `now`, with the fills since `state` added.
    func refilled(_ state: State, now: Int64) -> State {
        let elapsed = UInt32(clamping: max(now, 0) / fillIntervalNanoseconds)
        guard elapsed > state.fills else { return state }
        let added = UInt64(elapsed - state.fills) * UInt64(tokensPerFill)
        let tokens = UInt32(min(UInt64(maxTokens), UInt64(state.tokens) + added))
        return State(fills: elapsed, tokens: tokens)
    }

    /// Takes one token at `now`: the new state, and whether the request may pass.
    func take(_ state: State, now: Int64) -> (State, allowed: Bool) {
        var s = refilled(state, now: now)
        guard s.tokens > 0 else { return (s, false) }
        s.tokens -= 1
        return (s, true)
    }

    /// Nanoseconds from `now` to the next fill (for `x-ratelimit-reset`).
    func untilNextFill(now: Int64) -> Int64 {
        let n = max(now, 0)
        return fillIntervalNanoseconds - n % fillIntervalNanoseconds
    }
}

/// A token bucket every worker takes from: the state lives in one atomic word, updated by compare-and-swap.
final class SharedTokenBucket: Sendable {
    let bucket: TokenBucket
    private let state: ManagedAtomic<UInt64>
    /// The bucket's time zero, on the uptime clock.
    private let start: UInt64

    init(_ bucket: TokenBucket, start: UInt64) {
        self.bucket = bucket
        self.start = start
        state = ManagedAtomic(bucket.initialState.packed)
    }

    private func elapsed(_ now: UInt64) -> Int64 { Int64(bitPattern: now &- start) }

    func tryTake(now: UInt64) -> Bool {
        let t = elapsed(now)
        var current = state.load(ordering: .relaxed)
        while true {
            let (next, allowed) = bucket.take(TokenBucket.State(packed: current), now: t)
            if next.packed == current { return allowed }
            let (exchanged, original) = state.compareExchange(
                expected: current, desired: next.packed, ordering: .relaxed)
            if exchanged { return allowed }
            current = original
        }
    }

    func remaining(now: UInt64) -> UInt32 {
        bucket.refilled(TokenBucket.State(packed: state.load(ordering: .relaxed)), now: elapsed(now)).tokens
    }

    func secondsUntilNextFill(now: UInt64) -> Int64 {
        let ns = bucket.untilNextFill(now: elapsed(now))
        return (ns + 999_999_999) / 1_000_000_000
    }
}
