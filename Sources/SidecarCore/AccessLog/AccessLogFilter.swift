import NIOCore

/// An access log's `filter`: whether a finished stream (or connection) is written to that log at all. Envoy's
/// `AccessLog::Filter` implementations (`source/common/access_log/access_log_impl.cc`), limited to the ones that
/// read what Pilotfish records; the others are refused at load, by name.
public indirect enum AccessLogFilter: Sendable, Equatable {
    /// `status_code_filter`: the response code (0 when none was sent) against the comparison.
    case statusCode(Comparison)
    /// `duration_filter`: the stream's duration in whole milliseconds against the comparison.
    case duration(Comparison)
    /// `not_health_check_filter`: true unless the health_check HTTP filter answered the request.
    case notHealthCheck
    /// `response_flag_filter`: any of `flags` is set; with no flags, any flag at all.
    case responseFlag(Set<ResponseFlag>)
    /// `runtime_filter`: `random % denominator < numerator`, the numerator overridable by the runtime key.
    case runtime(RuntimeSample)
    case and([AccessLogFilter])
    case or([AccessLogFilter])

    /// `envoy.config.accesslog.v3.ComparisonFilter`: `op` against `value` (a `RuntimeUInt32`).
    public struct Comparison: Sendable, Equatable {
        public enum Op: String, Sendable, CaseIterable {
            case EQ, GE, LE
        }

        public var op: Op
        public var defaultValue: UInt64
        public var runtimeKey: String?

        public init(op: Op, defaultValue: UInt64, runtimeKey: String? = nil) {
            self.op = op
            self.defaultValue = defaultValue
            self.runtimeKey = runtimeKey
        }

        /// Envoy's `ComparisonFilter::compareAgainstValue`: the runtime key's integer replaces the default.
        package func matches(_ lhs: UInt64, runtime: RuntimeSnapshot) -> Bool {
            let value = runtime.integer(runtimeKey, default: defaultValue)
            switch op {
            case .EQ: return lhs == value
            case .GE: return lhs >= value
            case .LE: return lhs <= value
            }
        }
    }

    /// `envoy.config.accesslog.v3.RuntimeFilter`.
    public struct RuntimeSample: Sendable, Equatable {
        public var runtimeKey: String
        public var percent: FractionalPercent
        public var useIndependentRandomness: Bool
    }

    /// What a filter reads besides the stream: the runtime as it is now, and a random draw for runtime filters
    /// (taken only when one needs it).
    package struct Inputs {
        package var runtime: RuntimeSnapshot
        package var random: () -> UInt64

        package init(runtime: RuntimeSnapshot, random: @escaping () -> UInt64) {
            self.runtime = runtime
            self.random = random
        }
    }

    /// Envoy's `evaluate` for the stream `context` describes; and/or stop at the first filter that decides.
    package func evaluate(_ context: FormatContext, _ inputs: Inputs) -> Bool {
        let info = context.stream
        switch self {
        case .statusCode(let c):
            return c.matches(UInt64(max(0, info.responseCode ?? 0)), runtime: inputs.runtime)
        case .duration(let c):
            // Envoy's `currentDuration()`: none before the stream has a start (never the case once logged).
            guard let start = info.startTime?.monotonic else { return false }
            let end = info.end ?? info.now ?? .now()
            let ms = UInt64(max(0, (end - start).nanoseconds / 1_000_000))
            return c.matches(ms, runtime: inputs.runtime)
        case .notHealthCheck:
            return !info.healthCheck
        case .responseFlag(let flags):
            if flags.isEmpty { return !info.responseFlags.isEmpty }
            return info.responseFlags.flags.contains(where: flags.contains)
        case .runtime(let r):
            // Envoy draws from the stream id (the x-request-id's first 8 hex digits, as its UUID request-id
            // extension converts it) unless independent randomness is asked for or the id is not a number.
            let random: UInt64
            if !r.useIndependentRandomness, let id = Self.streamIDInteger(context) {
                random = id
            } else {
                random = inputs.random()
            }
            let numerator = inputs.runtime.integer(r.runtimeKey, default: r.percent.numerator)
            return random % r.percent.denominator < min(numerator, r.percent.denominator)
        case .and(let filters):
            for f in filters where !f.evaluate(context, inputs) { return false }
            return true
        case .or(let filters):
            for f in filters where f.evaluate(context, inputs) { return true }
            return false
        }
    }

    /// Envoy's `UUIDRequestIDExtension::toInteger`: the first 8 characters of `x-request-id` as hexadecimal.
    package static func streamIDInteger(_ context: FormatContext) -> UInt64? {
        guard let id = context.requestHeaders.first(name: "x-request-id"), id.utf8.count >= 8 else { return nil }
        return UInt64(String(id.utf8.prefix(8))!, radix: 16)
    }
}
