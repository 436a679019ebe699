import SidecarCore

/// Trace and span ids as numbers, and their lower-case hex text in headers and Zipkin spans.
package enum TraceHex {
    /// `value` as exactly 16 lower-case hex digits.
    package static func encode(_ value: UInt64) -> String {
        ShortASCII.make(count: 16) { out in
            for i in 0..<16 { out[i] = ShortASCII.hexDigit(value >> UInt64(60 - 4 * i)) }
        }
    }

    /// A trace id: 32 digits when it has a high half (or `wide`), else 16.
    package static func encode(trace: TraceID, wide: Bool = false) -> String {
        guard trace.high != 0 || wide else { return encode(trace.low) }
        return ShortASCII.make(count: 32) { out in
            for i in 0..<16 {
                out[i] = ShortASCII.hexDigit(trace.high >> UInt64(60 - 4 * i))
                out[16 + i] = ShortASCII.hexDigit(trace.low >> UInt64(60 - 4 * i))
            }
        }
    }

    /// 1 to 16 hex digits (either case) as a number; nil for anything else.
    package static func decode<S: StringProtocol>(_ text: S) -> UInt64? {
        let utf8 = text.utf8
        guard !utf8.isEmpty, utf8.count <= 16 else { return nil }
        var v: UInt64 = 0
        for b in utf8 {
            let d: UInt8
            switch b {
            case 48...57: d = b - 48
            case 97...102: d = b - 87
            case 65...70: d = b - 55
            default: return nil
            }
            v = v << 4 | UInt64(d)
        }
        return v
    }

    /// A 16- or 32-digit trace id.
    package static func decodeTrace<S: StringProtocol>(_ text: S) -> TraceID? {
        let n = text.utf8.count
        if n == 16 { return decode(text).map { TraceID(high: 0, low: $0) } }
        guard n == 32 else { return nil }
        let mid = text.index(text.startIndex, offsetBy: 16)
        guard let hi = decode(text[..<mid]), let lo = decode(text[mid...]) else { return nil }
        return TraceID(high: hi, low: lo)
    }
}

/// A 64- or 128-bit trace id (`high` is 0 for a 64-bit one).
package struct TraceID: Sendable, Hashable {
    package var high: UInt64
    package var low: UInt64

    package init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    package var isZero: Bool { high == 0 && low == 0 }
}
