import NIOCore
import NIOPosix
import SidecarCore

/// Where an upstream socket binds before connecting: the cluster's `upstream_bind_config` source, or,
/// with original_src, the downstream client's own address on a transparent socket carrying a mark.
package enum UpstreamSource: Hashable {
    case any
    case address(SocketAddress)
    /// IP_TRANSPARENT + SO_MARK, bound to the client's IP (port chosen by the kernel). Needs CAP_NET_ADMIN.
    case originalSource(SocketAddress, mark: UInt32)

    package static let soMark: Int32 = 36  // SO_MARK

    /// The cluster's own source (`upstream_bind_config`), resolved once per pool.
    package init(cluster: Cluster) {
        if let s = cluster.upstreamSourceAddress, let a = try? SocketAddress(ipAddress: s.address, port: s.port) {
            self = .address(a)
        } else {
            self = .any
        }
    }

    /// The source for one downstream connection of `listener`: original_src wins over the cluster's.
    package static func choose(listener: Listener, downstream: Channel, clusterSource: UpstreamSource) -> UpstreamSource {
        if let mark = listener.originalSourceMark, let remote = downstream.remoteAddress, let ip = remote.ipAddress,
            let client = try? SocketAddress(ipAddress: ip, port: 0)
        {
            return .originalSource(client, mark: mark)
        }
        return clusterSource
    }

    package func apply(to bootstrap: ClientBootstrap) -> ClientBootstrap {
        switch self {
        case .any:
            return bootstrap
        case .address(let a):
            return bootstrap.bind(to: a)
        case .originalSource(let a, let mark):
            let v6 = a.protocol == .inet6
            let transparent: ChannelOptions.Types.SocketOption =
                v6 ? .socket(SocketOptionLevel(IPPROTO_IPV6), 75) : .socket(SocketOptionLevel(IPPROTO_IP), 19)
            return bootstrap
                .channelOption(transparent, value: 1)
                .channelOption(.socket(SocketOptionLevel(SOL_SOCKET), SocketOptionName(Self.soMark)), value: SocketOptionValue(Int32(bitPattern: mark)))
                .bind(to: a)
        }
    }

    /// The key an HTTP pool shares connections under: connections from a client's own address serve only
    /// that client.
    package var poolKey: SocketAddress? {
        if case .originalSource(let a, _) = self { return a }
        return nil
    }
}
