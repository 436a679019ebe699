/// Short ASCII text (request ids, trace and span ids) written into a stack buffer and made a `String` with one
/// copy. `String(unsafeUninitializedCapacity:initializingUTF8With:)` went through the runtime's generic metadata
/// cache on every call in the proxy (about 1,300 instructions for a request id under callgrind, most of it the
/// cache lookup); this is the copy and the string's allocation.
package enum ShortASCII {
    package static let capacity = 64

    /// `write` fills exactly `count` bytes (at most `capacity`) of ASCII at the pointer it is given.
    @inlinable @inline(__always)
    package static func make(count: Int, _ write: (UnsafeMutablePointer<UInt8>) -> Void) -> String {
        precondition(count >= 0 && count <= capacity, "ShortASCII holds at most \(capacity) bytes")
        var storage: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &storage) { raw in
            let bytes = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            write(bytes)
            return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
        }
    }

    /// The lower-case hex digit of the low four bits of `nibble`.
    @inlinable @inline(__always)
    package static func hexDigit(_ nibble: UInt64) -> UInt8 {
        let n = UInt8(truncatingIfNeeded: nibble & 0xF)
        return n < 10 ? 48 &+ n : 87 &+ n
    }
}

extension ShortASCII {
    /// `value` in decimal (a status code, a byte count): digits right to left by division by the constant 10,
    /// into a small string, where `String(value)` goes through the generic integer description.
    @inlinable
    package static func decimal(_ value: UInt64) -> String {
        let digits = decimalDigits(value)
        return make(count: digits) { writeDecimal(value, digits: digits, to: $0) }
    }

    /// How many decimal digits `value` has.
    @inlinable @inline(__always)
    package static func decimalDigits(_ value: UInt64) -> Int {
        var digits = 1
        var rest = value
        while rest >= 10 {
            rest /= 10
            digits &+= 1
        }
        return digits
    }

    /// Writes `value`'s `digits` (`decimalDigits(value)`) decimal digits at `out`, right to left.
    @inlinable @inline(__always)
    package static func writeDecimal(_ value: UInt64, digits: Int, to out: UnsafeMutablePointer<UInt8>) {
        var v = value
        var i = digits
        repeat {
            i &-= 1
            out[i] = 0x30 &+ UInt8(truncatingIfNeeded: v % 10)
            v /= 10
        } while i > 0
    }
}
