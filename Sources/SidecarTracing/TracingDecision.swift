import SidecarCore

/// Envoy's tracing decision, kept in the request id as its UUID extension does: the version digit of
/// `x-request-id` (its 15th character) says why the request is traced (`9` sampled, `a` forced by
/// `x-envoy-force-trace`, `b` forced by the client's `x-client-trace-id`) or that it is not (`4`). The next hop
/// reads the same digit, so one decision holds along the whole path.
package enum TraceReason: Sendable, Equatable {
    case notTraceable
    case sampling
    case serviceForced
    case clientForced

    package var traced: Bool { self != .notTraceable }

    package var digit: UInt8 {
        switch self {
        case .notTraceable: UInt8(ascii: "4")
        case .sampling: UInt8(ascii: "9")
        case .serviceForced: UInt8(ascii: "a")
        case .clientForced: UInt8(ascii: "b")
        }
    }

    init(digit: UInt8) {
        switch digit {
        case UInt8(ascii: "9"): self = .sampling
        case UInt8(ascii: "a"): self = .serviceForced
        case UInt8(ascii: "b"): self = .clientForced
        default: self = .notTraceable
        }
    }
}

package enum TracingDecision {
    /// Envoy's `mutateTracingRequestHeader` and `shouldTraceRequest`: reads the reason in the request id, decides
    /// one if there is none (client trace id within `client_sampling`, then `x-envoy-force-trace`, then
    /// `random_sampling` on the id's own value), applies `overall_sampling`, and writes the reason back. A request
    /// without a usable UUID request id is not traced. `forceTrace`: the request carried `x-envoy-force-trace` and
    /// is internal (the connection manager strips it otherwise). Runtime keys as Envoy's: `tracing.client_enabled`,
    /// `tracing.random_sampling`, `tracing.global_enabled`. Returns the request id to send when the reason changed it.
    package static func decide(requestID: String?, hasClientTraceID: Bool, forceTrace: Bool, config: TracingConfig,
                               runtime: RuntimeSnapshot?, random: UInt64) -> (reason: TraceReason, rewritten: String?) {
        guard var id = requestID, let modulo = uuidModulo(id) else { return (.notTraceable, nil) }
        let digit = id.withUTF8 { $0[14] }
        let reason = decide(digit: digit, modulo: modulo, hasClientTraceID: hasClientTraceID, forceTrace: forceTrace,
                            config: config, runtime: runtime, random: random)
        guard digit != reason.digit else { return (reason, nil) }
        let marked = id.withUTF8 { bytes in
            ShortASCII.make(count: 36) { out in
                for i in 0..<36 { out[i] = bytes[i] }
                out[14] = reason.digit
            }
        }
        return (reason, marked)
    }

    /// The decision for a request id the connection manager is about to make: decided on the id's random bits
    /// before its text exists, so the id is written once with its reason (`FastRandom.uuid(_:version:)`) instead of
    /// written and then rewritten in the headers.
    package static func decide(newRequestID bits: FastRandom.UUIDBits, hasClientTraceID: Bool, forceTrace: Bool,
                               config: TracingConfig, runtime: RuntimeSnapshot?, random: UInt64) -> TraceReason {
        decide(digit: UInt8(ascii: "4"), modulo: bits.modulo10000, hasClientTraceID: hasClientTraceID,
               forceTrace: forceTrace, config: config, runtime: runtime, random: random)
    }

    /// `digit`: the id's version digit as it arrived; `modulo`: its first eight hex digits modulo 10,000.
    private static func decide(digit: UInt8, modulo: UInt64, hasClientTraceID: Bool, forceTrace: Bool,
                               config: TracingConfig, runtime: RuntimeSnapshot?, random: UInt64) -> TraceReason {
        var reason = TraceReason(digit: digit)
        if reason == .notTraceable {
            if hasClientTraceID, enabled(runtime, "tracing.client_enabled", config.clientSampling, random) {
                reason = .clientForced
            } else if forceTrace {
                reason = .serviceForced
            } else if enabled(runtime, "tracing.random_sampling", config.randomSampling, modulo) {
                reason = .sampling
            }
        }
        if reason != .notTraceable, !enabled(runtime, "tracing.global_enabled", config.overallSampling, modulo) {
            reason = .notTraceable
        }
        return reason
    }

    private static func enabled(_ runtime: RuntimeSnapshot?, _ key: String, _ percent: FractionalPercent,
                                _ random: UInt64) -> Bool {
        runtime?.featureEnabled(key, default: percent, random: random) ?? percent.evaluate(random)
    }

    /// Envoy's `UUIDRequestIDExtension::modBy`: a 36-character UUID's first 8 hex digits, modulo 10,000.
    static func uuidModulo(_ id: String) -> UInt64? {
        guard id.utf8.count == 36 else { return nil }
        var id = id
        return id.withUTF8 { bytes -> UInt64? in
            guard bytes[8] == UInt8(ascii: "-"), bytes[13] == UInt8(ascii: "-"), bytes[18] == UInt8(ascii: "-"),
                  bytes[23] == UInt8(ascii: "-") else { return nil }
            var v: UInt64 = 0
            for i in 0..<8 {
                let b = bytes[i]
                switch b {
                case 48...57: v = v << 4 | UInt64(b - 48)
                case 97...102: v = v << 4 | UInt64(b - 87)
                case 65...70: v = v << 4 | UInt64(b - 55)
                default: return nil
                }
            }
            return v % 10_000
        }
    }
}
