import NIOCore
import SidecarCore

/// The connection manager's `access_log`: one line per request, written when its stream ends (both directions
/// done, a local reply sent, or the connection gone), with the end time that `%DURATION%` reads.
extension HTTPProxyHandler {
    /// Call before the stream's filters are released. A connection manager without loggers pays one emptiness
    /// check.
    func logAccess() {
        let logs = listener.hcm.accessLogs
        guard !logs.isEmpty, requestActive else { return }
        worker.logAccess(logs) { c in
            fillFormatContext(&c)
            c.stream.end = .now()
            c.responseStatus = responseCode
            if let headers = loggedResponseHeaders {
                c.responseHeaders = headers
                loggedResponseHeaders = nil
            }
        }
    }
}
