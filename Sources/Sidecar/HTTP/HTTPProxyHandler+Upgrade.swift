import NIOCore
import NIOHTTP1
import SidecarCore
import SidecarUpstream

/// HTTP/1.1 upgrades (`upgrade_configs`): which requests may upgrade, the upgrade headers that cross the proxy, and
/// the switch to a byte tunnel once the upstream answered 101 (see `UpgradeTunnel`).
extension HTTPProxyHandler {
    /// The `Upgrade` value of a request that asks to upgrade (`Connection: upgrade` and an `Upgrade` header), in
    /// lower case; nil otherwise. `h2c` is not an upgrade the proxy makes (Envoy ignores it: the request goes on as
    /// HTTP/1.1), but NIO's HTTP/1 parser reads nothing after any upgrade request.
    static func upgradeType(_ headers: HTTPHeaders) -> String? {
        guard let value = headers.first(name: "upgrade"),
              headers[canonicalForm: "connection"].contains(where: { $0.lowercased() == "upgrade" })
        else { return nil }
        return value.lowercased()
    }

    /// Envoy's rule: the route's `upgrade_configs` entry for the type, else the connection manager's, else refused.
    func upgradeAllowed(_ type: String, route: RouteDecision) -> Bool {
        if case .forward(let target) = route, let enabled = target.upgradeConfigs[type] { return enabled }
        return listener.hcm.upgradeConfigs[type] ?? false
    }

    /// The upgrade headers hop-by-hop stripping removed, put back on an upgrade request going upstream.
    func restoreUpgradeHeaders(_ headers: inout HTTPHeaders, original: HTTPHeaders) {
        guard upgradeRequested != nil, let value = original.first(name: "upgrade") else { return }
        headers.replaceOrAdd(name: "upgrade", value: value)
        headers.replaceOrAdd(name: "connection", value: "Upgrade")
    }

    /// A 101 accepting the upgrade keeps its `upgrade` and `connection` headers on the way down (the other hop-by-hop
    /// headers go); the tunnel starts at its end.
    func acceptUpgrade(_ headers: inout HTTPHeaders) {
        upgradeAccepted = true
        for name in ["keep-alive", "proxy-connection", "te"] where headers.contains(name: name) {
            headers.remove(name: name)
        }
    }

    /// The 101 went down: from now on both connections carry the upgraded protocol's bytes. The route timeout no
    /// longer applies (as in Envoy); the stream idle timeout does.
    func startTunnel() {
        guard case .forwarding(let conn) = phase, let upstreamChannel = conn.channel else { return }
        upgraded = true
        routeTimer.clear()
        upstream?.perTryTimer?.cancel()
        upstream?.perTryTimer = nil
        context.flush()
        do {
            try UpgradeTunnel.join(
                downstream: context.pipeline.syncOperations, upstream: upstreamChannel.pipeline.syncOperations,
                downstreamRead: { [self] n in
                    bytesReceived &+= UInt64(n)
                    streamActivity &+= 1
                },
                upstreamRead: { [self] n in
                    bytesSent &+= UInt64(n)
                    streamActivity &+= 1
                })
        } catch {
            conn.close()
            context.close(promise: nil)
        }
    }
}
