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

    /// `value` in decimal, at least `width` digits, padded on the left with `fill`. Digits are made right to left
    /// by division by the constant 10 (a multiply and a shift), not by a running power of ten (a division
    /// instruction per digit, twice).
    @inlinable
    package mutating func appendDecimal<T: BinaryInteger>(_ value: T, width: Int = 1, fill: UInt8 = 0x30) {
        if value < 0 {
            append(UInt8(ascii: "-"))
            appendDecimal(Int64(clamping: value).magnitude, width: width - 1, fill: fill)
            return
        }
        var v = UInt64(clamping: value)
        // 24 bytes hold UInt64.max's 20 digits.
        var room: (UInt64, UInt64, UInt64) = (0, 0, 0)
        Swift.withUnsafeMutableBytes(of: &room) { raw in
            let digits = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var i = 24
            repeat {
                i &-= 1
                digits[i] = 0x30 &+ UInt8(truncatingIfNeeded: v % 10)
                v /= 10
            } while v != 0
            let count = 24 &- i
            if count < width {
                for _ in 0..<(width &- count) { append(fill) }
            }
            // Byte by byte: a handful of digits, where append(contentsOf:) costs more than it saves.
            while i < 24 {
                append(digits[i])
                i &+= 1
            }
        }
    }

    /// Escapes, in place, the bytes from `start` on as a JSON string's contents (`JSONEscape`). Nothing moves
    /// when there is nothing to escape, the usual case.
    package mutating func escapeJSON(from start: Int) {
        let first = withUnsafeBytes { JSONEscape.firstNeeded(in: $0, from: start) }
        guard first < count else { return }
        let tail = Array(self[first...])
        removeSubrange(first...)
        var escape: UInt64 = 0
        for b in tail {
            guard JSONEscape.needed(b) else {
                append(b)
                continue
            }
            Swift.withUnsafeMutableBytes(of: &escape) { room in
                append(contentsOf: room[..<JSONEscape.write(b, into: room, at: 0)])
            }
        }
    }
}

/// JSON string escapes: `"`, `\` and control bytes (bytes of multi-byte characters are all 0x80 or above and pass
/// unchanged). One rule for the access log's JSON lines and the tracers' span JSON.
package enum JSONEscape {
    @inlinable
    package static func needed(_ b: UInt8) -> Bool { b < 0x20 || b == 0x22 || b == 0x5C }

    /// Whether any of the eight bytes of `w` is `needed`, without looking at them one by one: a byte below 0x20
    /// (`(w - 0x20…) & ~w & 0x80…`) or equal to `"` or `\` (a zero byte of `w ^ 0x22…` or `w ^ 0x5C…`). Exact
    /// for "any" (a borrow can only mark a byte above one that is already a hit).
    @inlinable
    package static func anyNeeded(_ w: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let quote = w ^ (ones &* 0x22)
        let backslash = w ^ (ones &* 0x5C)
        let control = (w &- ones &* 0x20) & ~w
        return (control | ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash)) & highs != 0
    }

    /// The offset of the first byte from `start` on that is `needed`, or `bytes.count` when there is none:
    /// eight bytes a step. A span's tags and a log line's fields are scanned this way, nearly always to the end.
    /// Past the last whole step, the last eight bytes are read as one word (some of them again), so a string of
    /// eight bytes or more never goes byte by byte unless it has a byte to escape.
    @inlinable @inline(__always)
    package static func firstNeeded(in bytes: UnsafeRawBufferPointer, from start: Int = 0) -> Int {
        let n = bytes.count
        guard let p = bytes.baseAddress, start < n else { return n }
        var i = start
        if n &- start >= 8 {
            while i &+ 8 <= n, !anyNeeded(p.loadUnaligned(fromByteOffset: i, as: UInt64.self)) {
                i &+= 8
            }
            if i == n || (i &+ 8 > n && !anyNeeded(p.loadUnaligned(fromByteOffset: n &- 8, as: UInt64.self))) {
                return n
            }
        }
        while i < n {
            if needed(p.load(fromByteOffset: i, as: UInt8.self)) { return i }
            i &+= 1
        }
        return n
    }

    /// Writes the escape of `b` (one that is `needed`) at `offset`, where 6 bytes are free; returns its length.
    @inlinable
    package static func write(_ b: UInt8, into out: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
        out[offset] = 0x5C
        switch b {
        case 0x22, 0x5C:
            out[offset + 1] = b
        case 0x0A:
            out[offset + 1] = UInt8(ascii: "n")
        case 0x0D:
            out[offset + 1] = UInt8(ascii: "r")
        case 0x09:
            out[offset + 1] = UInt8(ascii: "t")
        default:
            out[offset + 1] = UInt8(ascii: "u")
            out[offset + 2] = 0x30
            out[offset + 3] = 0x30
            out[offset + 4] = b >> 4 == 0 ? 0x30 : 0x31
            let low = b & 0xF
            out[offset + 5] = low < 10 ? 0x30 &+ low : 0x57 &+ low
            return 6
        }
        return 2
    }
}
