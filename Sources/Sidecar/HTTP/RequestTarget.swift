/// The forms of an HTTP/1.1 request target (RFC 9112 3.2) the connection manager treats specially, as Envoy's
/// HTTP/1 codec does.
enum RequestTarget {
    /// An absolute-form target (`http://host/path?query`, scheme in any case): its authority and its path in
    /// origin form (`/` when it has none). Envoy forwards the origin form and takes the authority from the target,
    /// whatever the Host header says (RFC 9112 3.2.2). Nil for any other form.
    static func absoluteForm(_ uri: String) -> (authority: String, path: String)? {
        let utf8 = uri.utf8
        guard let first = utf8.first, first != UInt8(ascii: "/"), first != UInt8(ascii: "*") else { return nil }
        let prefixLength: Int
        if hasPrefix(utf8, "http://") {
            prefixLength = 7
        } else if hasPrefix(utf8, "https://") {
            prefixLength = 8
        } else {
            return nil
        }
        let rest = utf8.dropFirst(prefixLength)
        let end = rest.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }
            ?? rest.endIndex
        let authority = String(Substring(rest[rest.startIndex..<end]))
        guard !authority.isEmpty else { return nil }
        var path = String(Substring(rest[end...]))
        if let hash = path.firstIndex(of: "#") { path = String(path[..<hash]) }
        if path.isEmpty {
            path = "/"
        } else if path.first == "?" {
            path = "/" + path
        }
        return (authority, path)
    }

    /// Whether `uri` is a CONNECT target in authority form: a host (a name, an IPv4 address or a bracketed IPv6
    /// address) and a port. Envoy answers any other CONNECT target with 400.
    static func isAuthorityForm(_ uri: String) -> Bool {
        let utf8 = Array(uri.utf8)
        guard let colon = utf8.lastIndex(of: UInt8(ascii: ":")), colon > 0, colon < utf8.count - 1 else { return false }
        let port = utf8[(colon + 1)...]
        guard port.count <= 5, port.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let value = Int(String(decoding: port, as: UTF8.self)), value <= 65535 else { return false }
        let host = utf8[..<colon]
        if host.first == UInt8(ascii: "[") { return host.last == UInt8(ascii: "]") && host.count > 2 }
        return host.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: ".")
                || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
        }
    }

    private static func hasPrefix(_ utf8: String.UTF8View, _ prefix: StaticString) -> Bool {
        var i = utf8.startIndex
        for expected in UnsafeBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount) {
            guard i != utf8.endIndex else { return false }
            var byte = utf8[i]
            if byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") { byte += 32 }
            guard byte == expected else { return false }
            i = utf8.index(after: i)
        }
        return true
    }
}
