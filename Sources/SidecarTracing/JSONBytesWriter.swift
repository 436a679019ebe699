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
        let n = s.utf8CodeUnitCount
        precondition(count &+ n <= base.count)
        base.baseAddress!.advanced(by: count).copyMemory(from: s.utf8Start, byteCount: n)
        count &+= n
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
        let digits = ShortASCII.decimalDigits(v)
        precondition(count + digits <= base.count)
        ShortASCII.writeDecimal(v, digits: digits, to: base.baseAddress!.advanced(by: count).assumingMemoryBound(to: UInt8.self))
        count += digits
    }

    /// A JSON string literal, escaped by `JSONEscape`. Needs `worstCase(s)` bytes.
    mutating func string(_ s: String) {
        byte(UInt8(ascii: "\""))
        contents(s)
        byte(UInt8(ascii: "\""))
    }

    /// A JSON string literal of `scheme://host` followed by `path` (a span's URL tag, not joined first).
    mutating func string(_ scheme: String, _ host: String, _ path: Substring) {
        byte(UInt8(ascii: "\""))
        contents(scheme)
        literal("://")
        contents(host)
        var path = path
        path.withUTF8 { contents(UnsafeRawBufferPointer($0)) }
        byte(UInt8(ascii: "\""))
    }

    /// A JSON string literal of text known to need no escape (a tag name of Envoy's): copied, not scanned.
    mutating func cleanString(_ s: String) {
        byte(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { bytes in
            precondition(count &+ bytes.count < base.count)
            if let src = bytes.baseAddress {
                Self.copy(base.baseAddress! + count, UnsafeRawPointer(src), bytes.count)
            }
            count &+= bytes.count
        }
        byte(UInt8(ascii: "\""))
    }

    /// `n` bytes: at most sixteen (nearly every tag) by two overlapping word stores, more by memcpy.
    @inline(__always)
    private static func copy(_ dst: UnsafeMutableRawPointer, _ src: UnsafeRawPointer, _ n: Int) {
        if n >= 8 && n <= 16 {
            dst.storeBytes(of: src.loadUnaligned(as: UInt64.self), as: UInt64.self)
            dst.storeBytes(of: src.loadUnaligned(fromByteOffset: n &- 8, as: UInt64.self), toByteOffset: n &- 8, as: UInt64.self)
        } else if n < 8 {
            var i = 0
            while i < n {
                dst.storeBytes(of: src.load(fromByteOffset: i, as: UInt8.self), toByteOffset: i, as: UInt8.self)
                i &+= 1
            }
        } else {
            dst.copyMemory(from: src, byteCount: n)
        }
    }

    /// `s` escaped, without quotes.
    private mutating func contents(_ s: String) {
        var s = s
        s.withUTF8 { contents(UnsafeRawBufferPointer($0)) }
    }

    /// `bytes` escaped, without quotes. Needs six bytes of room for each.
    @inline(__always)
    private mutating func contents(_ bytes: UnsafeRawBufferPointer) {
        let n = bytes.count
        precondition(count &+ n &* 6 <= base.count)
        guard n > 0, let src = bytes.baseAddress, let dst = base.baseAddress else { return }
        // Nearly every value needs no escape: a scan (eight bytes a step), then one copy.
        let first = JSONEscape.firstNeeded(in: bytes)
        Self.copy(dst + count, src, first)
        var o = count &+ first
        var i = first
        while i < n {
            let b = src.load(fromByteOffset: i, as: UInt8.self)
            if JSONEscape.needed(b) {
                o &+= JSONEscape.write(b, into: base, at: o)
            } else {
                dst.storeBytes(of: b, toByteOffset: o, as: UInt8.self)
                o &+= 1
            }
            i &+= 1
        }
        count = o
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
