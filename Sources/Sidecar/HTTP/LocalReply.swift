import NIOCore
import NIOHTTP1
import SidecarCore

/// Responses the proxy makes itself, in Envoy's words.
enum LocalReply {
    static let connectFailurePrefix = "upstream connect error or disconnect/reset before headers. "
    static let timeout = "upstream request timeout"

    static func connectFailure(_ reason: String) -> String {
        connectFailurePrefix + "reset reason: " + reason
    }

    /// Envoy's response code details for a request that failed before the upstream answered:
    /// `upstream_reset_before_response_started{<reset reason>|<transport failure reason>}`, spaces as `_`.
    static func resetDetails(_ reason: String, transportFailure: String?) -> String {
        var d = "upstream_reset_before_response_started{" + String(reason.map { $0 == " " ? "_" : $0 })
        if let t = transportFailure, !t.isEmpty { d += "|" + t }
        return d + "}"
    }

    /// Envoy's local replies carry `content-length`, `content-type: text/plain` when there is a body, `date`, `server`.
    static func head(status: HTTPResponseStatus, bodyLength: Int, server: String, close: Bool) -> HTTPResponseHead {
        var headers = HTTPHeaders()
        addBodyHeaders(&headers, status: status, bodyLength: bodyLength)
        headers.add(name: "date", value: HTTPDate.now())
        headers.add(name: "server", value: server)
        if close { headers.add(name: "connection", value: "close") }
        return HTTPResponseHead(version: .http1_1, status: status, headers: headers)
    }
}

extension LocalReply {
    /// `content-length` and, with a body, `content-type: text/plain`, as Envoy's local replies carry them.
    static func addBodyHeaders(_ headers: inout HTTPHeaders, status: HTTPResponseStatus, bodyLength: Int) {
        // Set, not added: a route's response_headers_to_add may have written them already.
        if bodyLength > 0 {
            headers.setKeepingPosition(name: "content-length", value: String(bodyLength))
            headers.setKeepingPosition(name: "content-type", value: "text/plain")
        } else if status.code >= 200 && status.code != 204 && status.code != 304 {
            headers.setKeepingPosition(name: "content-length", value: "0")
        }
    }
}

/// RFC 9110 IMF-fixdate, cached per second.
enum HTTPDate {
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func now() -> String {
        var t = time(nil)
        var tm = tm()
        gmtime_r(&t, &tm)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(days[Int(tm.tm_wday)]), \(two(tm.tm_mday)) \(months[Int(tm.tm_mon)]) \(tm.tm_year + 1900) "
            + "\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)) GMT"
    }
}

#if canImport(Glibc)
import Glibc
#endif
