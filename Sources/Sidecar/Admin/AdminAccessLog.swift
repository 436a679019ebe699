import NIOCore
import NIOHTTP1
import SidecarCore

/// The bootstrap's `admin.access_log`: one line per admin request, with the loggers, formats and filters of the
/// connection manager's `access_log` (`AccessLogConfig`), written by the same access log thread.
///
/// What Envoy 1.40 puts in an admin request's line (observed with the default format and with a custom one):
/// `%REQ(:PATH)%` is the path with its query; `%PROTOCOL%` `HTTP/1.1`; `%RESPONSE_CODE%` the admin's status (405 for
/// a GET to a mutating endpoint, 404 for an unknown path); `%BYTES_RECEIVED%` / `%BYTES_SENT%` the request and
/// response bodies; `%DOWNSTREAM_REMOTE_ADDRESS%` the peer (the admin's connection manager uses the remote
/// address, so `x-forwarded-for` is never trusted) and `%REQ(X-FORWARDED-FOR)%` what the client sent with the peer
/// appended (a loopback peer as the host's first non-loopback address); no `x-request-id` is made;
/// `%RESPONSE_CODE_DETAILS%` `admin_filter_response`; `%RESPONSE_FLAGS%`, `%UPSTREAM_HOST%`, `%UPSTREAM_CLUSTER%`,
/// `%ROUTE_NAME%` and `%RESPONSE_DURATION%` empty (`-`). Envoy's default-format line:
/// `[2026-12-06T19:16:21.018Z] "GET /ready HTTP/1.1" 200 - 0 5 0 - "192.0.2.2" "curl/7.88.1" "-" "127.0.0.1:17300" "-"`.
/// Envoy writes its files every 10 s (`file_flush_interval_msec`); Pilotfish writes the line when the reply is sent.
struct AdminAccessLog: Sendable {
    let logs: [AccessLogConfig]
    let runtime: Runtime
    let hostname: String

    /// One admin request as it arrived, taken when it ended.
    struct Request: Sendable {
        var head: HTTPRequestHead
        var start: StreamStartTime
        var end: NIODeadline
        var bytesReceived: Int
        var peer: SocketAddress?
        var local: SocketAddress?
        var connectionID: UInt64
    }

    /// Logs `request`, answered with `status`, `headers` and `bodyBytes` of body, to each logger whose filter takes it.
    func log(_ request: Request, status: HTTPResponseStatus, headers: HTTPHeaders, bodyBytes: Int) {
        var c = FormatContext()
        c.requestHeaders = request.head.headers
        if let peer = request.peer, let ip = peer.ipAddress {
            let appended = ConnectionManagerHeaders.isLoopback(peer) ? SidecarServer.localAddress : ip
            if let existing = c.requestHeaders.first(name: "x-forwarded-for") {
                c.requestHeaders.replaceOrAdd(name: "x-forwarded-for", value: existing + "," + appended)
            } else {
                c.requestHeaders.add(name: "x-forwarded-for", value: appended)
            }
        }
        c.method = request.head.method.rawValue
        c.path = request.head.uri
        c.scheme = "http"
        c.responseStatus = Int(status.code)
        c.responseHeaders = headers
        c.stream.startTime = request.start
        c.stream.requestEnd = request.end
        c.stream.end = .now()
        c.stream.responseCode = Int(status.code)
        c.stream.bytesReceived = UInt64(request.bytesReceived)
        c.stream.bytesSent = UInt64(bodyBytes)
        c.stream.protocolName = "HTTP/\(request.head.version.major).\(request.head.version.minor)"
        let peer = request.peer.flatMap(StreamAddress.init)
        c.stream.downstreamRemoteAddress = peer
        c.stream.downstreamDirectRemoteAddress = peer
        c.stream.downstreamLocalAddress = request.local.flatMap(StreamAddress.init)
        c.stream.hostname = hostname
        c.stream.responseCodeDetails = "admin_filter_response"
        c.stream.connectionID = request.connectionID
        var selected: UInt64 = 0
        let inputs = AccessLogFilter.Inputs(runtime: runtime.snapshot, random: { UInt64.random(in: .min ... .max) })
        for (i, log) in logs.enumerated() where log.filter?.evaluate(c, inputs) ?? true {
            selected |= 1 << UInt64(i)
        }
        guard selected != 0 else { return }
        AccessLogWriter.shared.enqueue([AccessLogWriter.Entry(logs: logs, selected: selected, context: c)])
    }
}
