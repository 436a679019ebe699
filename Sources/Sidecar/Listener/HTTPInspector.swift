/// Envoy's http_inspector: is the connection's first data an HTTP/1.x request line or the HTTP/2
/// (prior knowledge) preface? Decides as soon as the bytes allow, so non-HTTP traffic is not held.
package enum HTTPInspector {
    package enum Verdict: Equatable {
        case needMore
        case notHTTP
        /// The detected application protocol: "http/1.1", "http/1.0" or "h2c".
        case protocolName(String)
    }

    static let h2Preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    /// Envoy reads at most this much before giving up.
    static let maxBytes = 64 * 1024

    package static func inspect(_ bytes: some Collection<UInt8>) -> Verdict {
        let data = Array(bytes.prefix(maxBytes))
        if data.isEmpty { return .needMore }
        let n = min(data.count, h2Preface.count)
        if Array(data[0..<n]) == Array(h2Preface[0..<n]) {
            return data.count >= h2Preface.count ? .protocolName("h2c") : .needMore
        }
        // METHOD SP request-target SP HTTP/1.x CRLF
        var i = 0
        while i < data.count, isTokenChar(data[i]) { i += 1 }
        if i == data.count { return data.count >= maxBytes ? .notHTTP : .needMore }
        guard i > 0, data[i] == UInt8(ascii: " ") else { return .notHTTP }
        i += 1
        let targetStart = i
        while i < data.count, data[i] > 0x20, data[i] != 0x7f { i += 1 }
        if i == data.count { return data.count >= maxBytes ? .notHTTP : .needMore }
        guard i > targetStart, data[i] == UInt8(ascii: " ") else { return .notHTTP }
        i += 1
        let version = Array("HTTP/1.".utf8)
        for (k, b) in version.enumerated() {
            if i + k >= data.count { return .needMore }
            if data[i + k] != b { return .notHTTP }
        }
        i += version.count
        if i >= data.count { return .needMore }
        let minor = data[i]
        guard minor == UInt8(ascii: "0") || minor == UInt8(ascii: "1") else { return .notHTTP }
        i += 1
        if i >= data.count { return .needMore }
        guard data[i] == UInt8(ascii: "\r") else { return .notHTTP }
        return .protocolName(minor == UInt8(ascii: "1") ? "http/1.1" : "http/1.0")
    }

    /// RFC 9110 tchar.
    private static func isTokenChar(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(b)
        }
    }
}
