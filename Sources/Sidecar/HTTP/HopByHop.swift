import NIOHTTP1

/// Connection-specific headers that a proxy must not forward (RFC 9110 §7.6.1), plus any header the
/// `connection` header names. Framing headers stay: the body is forwarded in the framing it came in.
enum HopByHop {
    static let names = ["connection", "keep-alive", "proxy-connection", "upgrade", "te"]

    static func strip(_ headers: inout HTTPHeaders) {
        if headers.contains(name: "connection") {
            for token in headers[canonicalForm: "connection"] {
                let name = token.lowercased()
                if name != "close" && name != "keep-alive" && name != "content-length" && name != "transfer-encoding" {
                    headers.remove(name: name)
                }
            }
        }
        for n in names where headers.contains(name: n) {
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
}
