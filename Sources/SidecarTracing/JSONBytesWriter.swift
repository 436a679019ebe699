import NIOCore
import SidecarCore

/// Writes JSON into memory reserved beforehand for the worst case (every string byte escaped as `\u00XX`): no
/// capacity check, uniqueness check or call per write, which is where a span's encoding spent its time when it
/// went through ByteBuffer's writers (about 150 instructions per write, some 60 writes per span).
struct JSONBytesWriter {
    private let base: UnsafeMutableRawBufferPointer
    private(set) var count = 0

    init(_ base: UnsafeMutableRawBufferPointer) {
        self.base = base
    }

    /// The bytes a JSON string literal of `s` can take at most, quotes included.
    static func worstCase(_ s: String) -> Int { s.utf8.count * 6 + 2 }

    mutating func byte(_ b: UInt8) {
        precondition(count < base.count)
        base[count] = b
        count += 1
    }

    mutating func literal(_ s: StaticString) {
        s.withUTF8Buffer { bytes in
            precondition(count + bytes.count <= base.count)
            UnsafeMutableRawBufferPointer(rebasing: base[count...]).copyMemory(from: UnsafeRawBufferPointer(bytes))
            count += bytes.count
        }
    }

    /// Bytes already encoded (the local endpoint, the same in every span).
    mutating func raw(_ bytes: UnsafeRawBufferPointer) {
        precondition(count + bytes.count <= base.count)
        UnsafeMutableRawBufferPointer(rebasing: base[count...]).copyMemory(from: bytes)
        count += bytes.count
    }

    /// 16 lower-case hex digits.
    mutating func hex(_ v: UInt64) {
        precondition(count + 16 <= base.count)
        for i in 0..<16 {
            let n = UInt8(truncatingIfNeeded: (v >> UInt64(60 - 4 * i)) & 0xF)
            base[count + i] = n < 10 ? 0x30 &+ n : 0x57 &+ n
        }
        count += 16
    }

    mutating func decimal(_ v: UInt64) {
        var digits = 1
        var rest = v
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        precondition(count + digits <= base.count)
        var n = v
        for i in stride(from: count + digits - 1, through: count, by: -1) {
            base[i] = 0x30 &+ UInt8(truncatingIfNeeded: n % 10)
            n /= 10
        }
        count += digits
    }

    /// A JSON string literal, escaped by `JSONEscape`. Needs `worstCase(s)` bytes.
    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { bytes in
            precondition(count + bytes.count * 6 + 2 <= base.count)
            var o = count
            base[o] = UInt8(ascii: "\"")
            o += 1
            // Nearly every tag needs no escape: a scan, then one copy.
            if !bytes.contains(where: JSONEscape.needed) {
                UnsafeMutableRawBufferPointer(rebasing: base[o...]).copyMemory(from: UnsafeRawBufferPointer(bytes))
                o += bytes.count
            } else {
                for b in bytes {
                    if JSONEscape.needed(b) {
                        o += JSONEscape.write(b, into: base, at: o)
                    } else {
                        base[o] = b
                        o += 1
                    }
                }
            }
            base[o] = UInt8(ascii: "\"")
            count = o + 1
        }
    }
}

extension ByteBuffer {
    /// Reserves `worstCase` bytes and lets `body` write into them.
    mutating func writeJSON(worstCase: Int, _ body: (inout JSONBytesWriter) -> Void) {
        writeWithUnsafeMutableBytes(minimumWritableBytes: worstCase) { buffer in
            var writer = JSONBytesWriter(UnsafeMutableRawBufferPointer(rebasing: buffer[..<worstCase]))
            body(&writer)
            return writer.count
        }
    }
}
