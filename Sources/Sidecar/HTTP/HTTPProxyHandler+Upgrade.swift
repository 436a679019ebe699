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
        joinTunnel(upstreamChannel, upstreamHasCodec: true)
    }

    /// Both connections become the tunnel; bytes count for the access log and as stream activity. Reads held while
    /// the upstream was being readied go on, now through the tunnel.
    private func joinTunnel(_ upstreamChannel: Channel, upstreamHasCodec: Bool) {
        do {
            try UpgradeTunnel.join(
                downstream: context.pipeline.syncOperations, upstream: upstreamChannel.pipeline.syncOperations,
                upstreamHasCodec: upstreamHasCodec,
                downstreamRead: { [self] n in
                    bytesReceived &+= UInt64(n)
                    streamActivity &+= 1
                },
                upstreamRead: { [self] n in
                    bytesSent &+= UInt64(n)
                    streamActivity &+= 1
                })
        } catch {
            upstreamChannel.close(promise: nil)
            context.close(promise: nil)
            return
        }
        if readPending {
            readPending = false
            context.read()
        }
    }
}

// MARK: CONNECT

extension HTTPProxyHandler {
    /// A CONNECT on a route whose CONNECT upgrade has `connect_config`: the proxy is the end of the CONNECT (Envoy's
    /// terminating mode). It opens a TCP connection to a host of the route's cluster, answers 200 itself, and the
    /// two connections become a tunnel. A host that cannot be reached gets Envoy's 503.
    func terminateConnect(_ target: ForwardTarget, snapshot: WorkerSnapshot) {
        guard let slot = target.clusterSlot ?? snapshot.config.slot(named: target.cluster) else {
            responseFlags.insert(.noClusterFound)
            stream.sendLocalReply(status: .serviceUnavailable, body: "", closeConnection: true, details: "cluster_not_found")
            return
        }
        let local = snapshot[slot]
        cluster = local.info
        guard let index = local.choose(hash: nil, random: &worker.random) else {
            stats.inc(local.info.stats.cxNoneHealthy)
            responseFlags.insert(.noHealthyUpstream)
            stream.sendLocalReply(status: .serviceUnavailable, body: "no healthy upstream", closeConnection: true,
                                  details: "no_healthy_upstream")
            return
        }
        let host = local.hosts[index]
        upstreamHostAddress = host.address
        phase = .connecting
        let source = UpstreamSource.choose(listener: listener.config, downstream: context.channel,
                                           clusterSource: local.pool.clusterSource)
        let requestID = stream.streamID
        local.pool.open(to: host.address, source: source)
            .assumeIsolated()
            .whenComplete { [self] result in
                switch result {
                case .success(let opened):
                    let channel = opened.channel
                    // The client left (or the stream moved on) while the connection was made.
                    guard context != nil, stream.active, stream.streamID == requestID, case .connecting = phase else {
                        channel.close(promise: nil)
                        return
                    }
                    upstreamLocalAddress = channel.localAddress
                    connectTunnelEstablished(channel)
                case .failure(let error):
                    guard context != nil, stream.active, stream.streamID == requestID else { return }
                    upstreamTransportFailureReason = UpstreamConnectError.transportFailureReason(error)
                    responseFlags.insert(.upstreamConnectionFailure)
                    phase = .decoding
                    stream.sendLocalReply(
                        status: .serviceUnavailable, body: LocalReply.connectFailure("remote connection failure"),
                        closeConnection: true,
                        details: LocalReply.resetDetails("remote connection failure",
                                                         transportFailure: upstreamTransportFailureReason))
                }
            }
    }

    /// The upstream TCP connection of a terminated CONNECT is up: 200 goes down, then the bytes flow.
    private func connectTunnelEstablished(_ upstreamChannel: Channel) {
        upgradeAccepted = true
        upgraded = true
        routeTimer.clear()
        responseCodeDetails = "via_upstream"
        stream.encodeHeaders(HTTPResponseHead(version: .http1_1, status: .ok), endStream: false)
        context.flush()
        phase = .discarding
        joinTunnel(upstreamChannel, upstreamHasCodec: false)
    }
}
