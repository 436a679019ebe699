/// What formats render into: UTF-8 bytes, appended in place. Access log lines go to their file as bytes, so the
/// formatter writes bytes (an append is a bounds check and a store, where `String +=` re-examines the string
/// each time); header values convert the bytes once at the end.
extension Array where Element == UInt8 {
    @inlinable
    package mutating func appendText(_ s: String) {
        var s = s
        s.withUTF8 { append(contentsOf: $0) }
    }

    @inlinable
    package mutating func appendText(_ s: Substring) {
        var s = s
        s.withUTF8 { append(contentsOf: $0) }
    }

    @inlinable
    package mutating func appendText(_ s: StaticString) {
        s.withUTF8Buffer { append(contentsOf: $0) }
    }

    /// `value` in decimal, at least `width` digits, padded on the left with `fill`.
    @inlinable
    package mutating func appendDecimal<T: BinaryInteger>(_ value: T, width: Int = 1, fill: UInt8 = 0x30) {
        if value < 0 {
            append(UInt8(ascii: "-"))
            appendDecimal(Int64(clamping: value).magnitude, width: width - 1, fill: fill)
            return
        }
        var v = UInt64(clamping: value)
        var divisor: UInt64 = 1
        var count = 1
        while v / divisor >= 10 {
            divisor &*= 10
            count &+= 1
        }
        if count < width {
            for _ in 0..<(width &- count) { append(fill) }
        }
        while true {
            append(0x30 &+ UInt8(truncatingIfNeeded: v / divisor))
            v %= divisor
            if divisor == 1 { break }
            divisor /= 10
        }
    }

    /// Escapes, in place, the bytes from `start` on as a JSON string's contents: `"`, `\\` and control bytes
    /// (bytes of multi-byte characters are all 0x80 or above and pass unchanged). Nothing moves when there is
    /// nothing to escape, the usual case.
    package mutating func escapeJSON(from start: Int) {
        guard let first = self[start...].firstIndex(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }) else { return }
        let tail = Array(self[first...])
        removeSubrange(first...)
        for b in tail {
            switch b {
            case 0x22: append(contentsOf: [0x5C, 0x22])
            case 0x5C: append(contentsOf: [0x5C, 0x5C])
            case 0x0A: append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case ..<0x20:
                appendText("\\u00")
                append(b >> 4 == 0 ? 0x30 : 0x31)
                let low = b & 0xF
                append(low < 10 ? 0x30 &+ low : 0x57 &+ low)
            default: append(b)
            }
        }
    }
}
