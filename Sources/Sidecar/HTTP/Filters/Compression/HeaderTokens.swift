import NIOHTTP1

/// Envoy's `StringUtil` helpers as the compressor and decompressor filters use them on header values.
enum HeaderTokens {
    private static let whitespace: Set<Character> = [" ", "\t", "\u{0B}", "\u{0C}", "\n", "\r"]

    static func trim<S: StringProtocol>(_ s: S) -> Substring {
        var sub = Substring(s)
        while let f = sub.first, whitespace.contains(f) { sub.removeFirst() }
        while let l = sub.last, whitespace.contains(l) { sub.removeLast() }
        return sub
    }

    /// What precedes the first `delimiter` (all of `s` when there is none).
    static func cropRight(_ s: Substring, _ delimiter: Character) -> Substring {
        s.firstIndex(of: delimiter).map { s[..<$0] } ?? s
    }

    /// What follows the first `delimiter` (all of `s` when there is none).
    static func cropLeft(_ s: Substring, _ delimiter: Character) -> Substring {
        s.firstIndex(of: delimiter).map { s[s.index(after: $0)...] } ?? s
    }

    /// Envoy's inline headers hold repeated lines as one value joined with ",": the value its filters see.
    static func combined(_ headers: HTTPHeaders, _ name: String) -> String? {
        let values = headers[name]
        if values.isEmpty { return nil }
        return values.count == 1 ? values[0] : values.joined(separator: ",")
    }

    /// `StringUtil::caseFindToken`: whether a comma-separated `value` has `token`, ignoring case and whitespace.
    static func containsTokenIgnoringCase(_ value: String, _ token: String) -> Bool {
        value.split(separator: ",", omittingEmptySubsequences: false).contains {
            trim($0).lowercased() == token
        }
    }

    /// `StringUtil::findToken` with whitespace trimmed: exact (case-sensitive) token match.
    static func containsToken(_ value: String, _ token: String) -> Bool {
        value.split(separator: ",", omittingEmptySubsequences: false).contains { trim($0) == token }
    }

    /// Replaces the first `name` line's value where it stands (as Envoy's `setInline` does) and drops the others;
    /// adds the header at the end when absent.
    static func set(_ headers: inout HTTPHeaders, _ name: String, _ value: String) {
        guard headers.contains(name: name) else {
            headers.add(name: name, value: value)
            return
        }
        var out = HTTPHeaders()
        out.reserveCapacity(headers.count)
        var done = false
        for (n, v) in headers {
            if n.lowercased() == name {
                if !done { out.add(name: n, value: value) }
                done = true
            } else {
                out.add(name: n, value: v)
            }
        }
        headers = out
    }

    /// The message has no body to transform whatever its headers say: a response to HEAD, 1xx, 204 and 304
    /// (Envoy's codec ends those streams with their headers).
    static func responseHasNoBody(_ status: HTTPResponseStatus, headRequest: Bool) -> Bool {
        headRequest || status.code < 200 || status.code == 204 || status.code == 304
    }

    /// After a filter removed `content-length` from a request with a body: the upstream request is chunked (NIO
    /// frames a body-less-by-default method such as GET only by its headers).
    static func ensureChunked(_ headers: inout HTTPHeaders) {
        if !headers.contains(name: "transfer-encoding") { headers.add(name: "transfer-encoding", value: "chunked") }
    }
}
