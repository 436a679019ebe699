import NIOHTTP1

/// Hop-by-hop headers (RFC 9110 §7.6.1) end at the proxy: `connection`, the headers it names, `keep-alive`,
/// `proxy-connection`, `upgrade`, and `te` unless it is just `trailers` (Envoy keeps that one).
enum HopByHop {
    static let names = ["connection", "keep-alive", "proxy-connection", "upgrade", "te"]

    /// Runs on every request and response. One pass over the headers finds the hop-by-hop ones (comparing
    /// lengths first) and the tokens `connection` names; only those are then removed. The usual case, a
    /// `connection: keep-alive` from the upstream, costs that pass and one removal.
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

    /// The header names a `connection` value lists, other than the ones that never go (`close`, `keep-alive`,
    /// `content-length`, `transfer-encoding`).
    private static func nominate(_ value: String, into list: inout [String]) {
        for token in value.utf8.split(separator: UInt8(ascii: ",")) {
            let trimmed = token.drop(while: { $0 == 32 || $0 == 9 }).reversed().drop(while: { $0 == 32 || $0 == 9 })
            let count = trimmed.count
            guard count > 0 else { continue }
            let name = String(decoding: trimmed.reversed(), as: UTF8.self).lowercased()
            if count == 5 && name == "close" { continue }
            if names.contains(name) && name != "te" { continue }
            if name == "content-length" || name == "transfer-encoding" { continue }
            list.append(name)
        }
    }

    /// Index in `names` of `name`, ignoring ASCII case.
    static func hopByHopIndex(_ name: String) -> Int? {
        let utf8 = name.utf8
        switch utf8.count {
        case 2, 7, 10, 16:
            for (i, n) in names.enumerated() where n.utf8.count == utf8.count && equalsLowercased(utf8, n.utf8) {
                return i
            }
            return nil
        default:
            return nil
        }
    }

    /// `a` equals the lower-case ASCII `lower`, ignoring the case of `a`.
    @inline(__always)
    static func equalsLowercased(_ a: String.UTF8View, _ lower: String.UTF8View) -> Bool {
        var i = lower.makeIterator()
        for byte in a {
            guard let l = i.next() else { return false }
            let folded = byte >= 65 && byte <= 90 ? byte | 0x20 : byte
            if folded != l { return false }
        }
        return i.next() == nil
    }
}
