import NIOCore
import NIOHTTP1

/// RBAC on an HTTP listener: the chain's network filters decide when the connection starts, the connection
/// manager's HTTP filters for each request before it is routed.
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

    /// Envoy's `envoy.filters.http.rbac` filters, in order.
    func httpRBACAllows(_ route: RouteRequest) -> Bool {
        var request = RBACRequest(
            source: context.channel.remoteAddress, destination: rbacDestination, security: security,
            requestedServerName: requestedServerName, http: route)
        if listener.httpRBACUsesRemoteIP, let forwarded = RBACRequest.forwardedFor(route.headers) {
            request.remote = forwarded
        }
        return RBACFilter.allow(listener.httpRBAC, request, counting: stats)
    }

    /// Envoy's local reply for a denied request: 403, `RBAC: access denied` as text/plain, with the matched
    /// route's response header mutations (Envoy's local replies finalize response headers with the route).
    /// The connection stays open unless the request has a body still to come: Envoy closes an HTTP/1
    /// connection whose response ended before its request did (checked on Envoy 1.40).
    func rejectDeniedRequest(_ head: HTTPRequestHead, route: RouteDecision) {
        phase = .discarding
        switch route {
        case .noRoute: responseMutations = []
        case .forward(let target): responseMutations = target.mutations
        case .directResponse(_, let mutations, _), .redirect(_, _, let mutations, _): responseMutations = mutations
        }
        if Self.hasRequestBody(head) { keepAlive = false }
        writeLocalReply(status: .forbidden, body: Array(Self.accessDeniedBody.utf8), close: !keepAlive,
                        isHead: head.method == .HEAD)
    }

    static let accessDeniedBody = "RBAC: access denied"

    /// Whether a body follows the head (Envoy knows at the head whether the stream ends there).
    static func hasRequestBody(_ head: HTTPRequestHead) -> Bool {
        if head.headers.contains(name: "transfer-encoding") { return true }
        guard let length = head.headers.first(name: "content-length") else { return false }
        return Int(length) != 0
    }
}
