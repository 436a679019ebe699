import NIOCore
import NIOHTTP1
import SidecarCore

/// Network RBAC on an HTTP listener: the chain's network filters decide when the connection starts (the HTTP
/// filter is `RBACHTTPFilter`).
extension HTTPProxyHandler {
    /// Envoy's `envoy.filters.network.rbac` in front of the connection manager. Envoy decides on the first
    /// bytes (or FIN) and closes without a response; deciding as the connection starts gives the same answer
    /// (the inputs are the connection's) and the same observable result: the connection closes unanswered.
    func networkRBACAllows() -> Bool {
        let request = RBACRequest(
            source: context.channel.remoteAddress, destination: rbacDestination, security: security,
            requestedServerName: requestedServerName)
        return RBACFilter.allow(listener.networkRBAC, request, counting: stats)
    }

    /// Whether a body follows the head (Envoy knows at the head whether the stream ends there).
    static func hasRequestBody(_ head: HTTPRequestHead) -> Bool {
        if head.headers.contains(name: "transfer-encoding") { return true }
        guard let length = head.headers.first(name: "content-length") else { return false }
        return Int(length) != 0
    }
}
