import NIOHTTP1

/// Hop-by-hop headers (RFC 9110 §7.6.1) end at the proxy: `connection`, the headers it names, `keep-alive`,
/// `proxy-connection`, `upgrade`, and `te` unless it is just `trailers` (Envoy keeps that one).
enum HopByHop {
    static let names = ["connection", "keep-alive", "proxy-connection", "upgrade", "te"]

    /// Runs on every request and response, so it is written for the usual cases: no hop-by-hop header at all, or
    /// an upstream's `connection: keep-alive`. One pass over the names (lengths first, then bytes in place)
    /// finds what is there and what `connection` nominates; only then are headers removed.
    static func strip(_ headers: inout HTTPHeaders) {
        var present: UInt8 = 0  // bit i: names[i] is there
        var nominated: [String] = []
        for (name, value) in headers {
            guard let i = hopByHopIndex(name) else { continue }
            present |= 1 << i
            if i == 0 { nominate(value, into: &nominated) }
        }
        guard present != 0 else { return }
        for name in nominated { headers.remove(name: name) }
        for (i, n) in names.enumerated() where present & (1 << i) != 0 {
            if n == "te" {
                // `te: trailers` is end-to-end in Envoy's reading; anything else goes.
                let keep = headers[canonicalForm: "te"].contains { $0.lowercased() == "trailers" }
                headers.remove(name: "te")
                if keep { headers.add(name: "te", value: "trailers") }
            } else {
                headers.remove(name: n)
            }
        }
    }

    /// Index in `names` of `name`, ignoring ASCII case.
    static func hopByHopIndex(_ name: String) -> Int? {
        switch name.utf8.count {
        case 10:
            if equalsLowercased(name, "connection") { return 0 }
            if equalsLowercased(name, "keep-alive") { return 1 }
            return nil
        case 16: return equalsLowercased(name, "proxy-connection") ? 2 : nil
        case 7: return equalsLowercased(name, "upgrade") ? 3 : nil
        case 2: return equalsLowercased(name, "te") ? 4 : nil
        default: return nil
        }
    }

    /// The header names a `connection` value lists, other than the ones that never go (`close`, `keep-alive`,
    /// `content-length`, `transfer-encoding`) and the hop-by-hop names removed anyway. Tokens are compared in
    /// place: the usual `keep-alive` or `close` allocates nothing.
    private static func nominate(_ value: String, into list: inout [String]) {
        forEachToken(value) { token in
            if !isKept(token) { list.append(String(decoding: token, as: UTF8.self).lowercased()) }
        }
    }

    /// Each comma-separated token of a `connection` value, blanks around it trimmed, empty ones skipped, as bytes
    /// in place.
    static func forEachToken(_ value: String, _ body: (UnsafeBufferPointer<UInt8>) -> Void) {
        var value = value
        value.withUTF8 { buf in
            var start = 0
            while start < buf.count {
                var end = start
                while end < buf.count && buf[end] != UInt8(ascii: ",") { end += 1 }
                var lo = start, hi = end
                while lo < hi && (buf[lo] == 32 || buf[lo] == 9) { lo += 1 }
                while hi > lo && (buf[hi - 1] == 32 || buf[hi - 1] == 9) { hi -= 1 }
                start = end + 1
                guard lo < hi else { continue }
                body(UnsafeBufferPointer(rebasing: buf[lo..<hi]))
            }
        }
    }

    /// Tokens of `connection` that name no header to remove: framing, the close/keep-alive options, and the
    /// hop-by-hop names that go anyway (`te` is not one: named, it goes even as `te: trailers`).
    private static func isKept(_ token: UnsafeBufferPointer<UInt8>) -> Bool {
        switch token.count {
        case 5: return equalsLowercased(token, "close")
        case 10: return equalsLowercased(token, "keep-alive") || equalsLowercased(token, "connection")
        case 14: return equalsLowercased(token, "content-length")
        case 17: return equalsLowercased(token, "transfer-encoding")
        case 16: return equalsLowercased(token, "proxy-connection")
        case 7: return equalsLowercased(token, "upgrade")
        default: return false
        }
    }

    /// `s` equals the lower-case ASCII `lower`, ignoring the case of `s`.
    @inline(__always)
    static func equalsLowercased(_ s: String, _ lower: StaticString) -> Bool {
        guard s.utf8.count == lower.utf8CodeUnitCount else { return false }
        if let result = s.utf8.withContiguousStorageIfAvailable({ equalsLowercased($0, lower) }) { return result }
        return Array(s.utf8).withUnsafeBufferPointer { equalsLowercased($0, lower) }
    }

    @inline(__always)
    static func equalsLowercased(_ bytes: UnsafeBufferPointer<UInt8>, _ lower: StaticString) -> Bool {
        guard bytes.count == lower.utf8CodeUnitCount else { return false }
        let l = lower.utf8Start
        for i in 0..<bytes.count {
            var b = bytes[i]
            if b &- 65 < 26 { b |= 0x20 }
            if b != l[i] { return false }
        }
        return true
    }
}
