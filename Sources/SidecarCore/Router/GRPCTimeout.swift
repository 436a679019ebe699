/// gRPC's `grpc-timeout` request header and Envoy's use of it (`FilterUtility::finalTimeout`).
public enum GRPCTimeout {
    /// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n), as Envoy's `Grpc::Common::getGrpcTimeout`
    /// reads it; nil when absent or malformed.
    public static func parse(_ value: String?) -> ProtoDuration? {
        guard let value, let unit = value.utf8.last else { return nil }
        let digits = value.utf8.dropLast()
        guard !digits.isEmpty, digits.count <= 8, digits.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        var n: Int64 = 0
        for d in digits { n = n * 10 + Int64(d - 48) }
        switch unit {
        case UInt8(ascii: "H"): return ProtoDuration(nanoseconds: n * 3_600_000_000_000)
        case UInt8(ascii: "M"): return ProtoDuration(nanoseconds: n * 60_000_000_000)
        case UInt8(ascii: "S"): return ProtoDuration(nanoseconds: n * 1_000_000_000)
        case UInt8(ascii: "m"): return ProtoDuration(nanoseconds: n * 1_000_000)
        case UInt8(ascii: "u"): return ProtoDuration(nanoseconds: n * 1_000)
        case UInt8(ascii: "n"): return ProtoDuration(nanoseconds: n)
        default: return nil
        }
    }

    /// The route timeout of a gRPC request on a route with `grpc_timeout_header_max` (or the deprecated
    /// `max_grpc_timeout`): the request's `grpc-timeout` less `offset` (when the offset is smaller), capped at `max`
    /// unless `max` is zero; no header means no timeout, or `max` when it is set. Zero: no timeout. Envoy works in
    /// whole milliseconds.
    public static func routeTimeout(header: String?, max: ProtoDuration, offset: ProtoDuration?) -> ProtoDuration {
        var timeout = ProtoDuration.milliseconds(parse(header)?.milliseconds ?? 0)
        if let offset, offset.milliseconds < timeout.milliseconds {
            timeout = .milliseconds(timeout.milliseconds - offset.milliseconds)
        }
        if !max.isZero && (timeout.isZero || timeout.milliseconds > max.milliseconds) {
            timeout = .milliseconds(max.milliseconds)
        }
        return timeout
    }
}
