import NIOHTTP1

/// The request headers as Envoy's HTTP filters see them, read without allocating except to join a header
/// that occurs more than once.
extension RBACRequest {
    /// A header after the connection manager has added `x-forwarded-proto` and `x-request-id` (the handler
    /// generates a missing id before RBAC runs) and removed the headers it consumes, all checked on Envoy 1.40:
    /// hop-by-hop headers and those `connection` names, `transfer-encoding`, `expect: 100-continue`, and the
    /// router's `x-envoy-*` control headers. `host` is the authority, as Envoy's header map answers it.
    /// Repeated headers are joined with ",", as Envoy's header matcher joins them.
    package static func header(_ name: String, of request: RouteRequest) -> String? {
        switch name {
        case ":path", ":method", ":authority", ":scheme":
            return request.header(name)
        case "host":
            return request.authority
        case "x-forwarded-proto":
            return joined(request.headers, name) ?? request.scheme
        case "connection", "keep-alive", "proxy-connection", "upgrade", "transfer-encoding":
            return nil
        case "te":
            return listHasToken(request.headers, "te", "trailers") ? "trailers" : nil
        case "expect":
            let value = joined(request.headers, name)
            return value.map { equalsIgnoringASCIICase($0, "100-continue") } == true ? nil : value
        default:
            if RetryHeaders.hasEnvoyPrefix(name) && RetryHeaders.names.contains(name) { return nil }
            if name != "content-length" && listHasToken(request.headers, "connection", name) { return nil }
            return joined(request.headers, name)
        }
    }

    /// Every value of `name`, joined with ",".
    package static func joined(_ headers: HTTPHeaders, _ name: String) -> String? {
        var found: String?
        for (n, v) in headers where equalsIgnoringASCIICase(n, name) {
            if let f = found { found = f + "," + v } else { found = v }
        }
        return found
    }

    /// Whether some value of the list header `header` has the comma-separated token `token` (any case).
    package static func listHasToken(_ headers: HTTPHeaders, _ header: String, _ token: String) -> Bool {
        for (n, v) in headers where equalsIgnoringASCIICase(n, header) {
            var rest = Substring(v)
            while !rest.isEmpty {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                var item = rest[..<end]
                while item.first == " " || item.first == "\t" { item = item.dropFirst() }
                while item.last == " " || item.last == "\t" { item = item.dropLast() }
                if equalsIgnoringASCIICase(item, token) { return true }
                rest = end == rest.endIndex ? rest[end...] : rest[rest.index(after: end)...]
            }
        }
        return false
    }
}
