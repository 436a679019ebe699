import MeshCapture
import NIOCore
import SidecarCore

#if canImport(Glibc)
import Glibc
#endif

/// Where an accepted connection was going before capture, as Envoy's original_dst listener filter finds
/// it: SO_ORIGINAL_DST (IP6T_SO_ORIGINAL_DST) from conntrack after a REDIRECT, else the socket's local
/// address (a TPROXY'd connection keeps its destination). The conntrack lookup is MeshCapture's
/// `OriginalDestinationLookup`, shared with sidecar-init; this adapts it to the channel and SocketAddress.
enum OriginalDestination {
    /// Must run on the channel's event loop (the socket is read synchronously).
    static func lookup(_ channel: Channel, listener: Listener) -> SocketAddress? {
        guard let local = channel.localAddress else { return nil }
        let family: Int32
        switch local {
        case .v4: family = AF_INET
        case .v6: family = AF_INET6
        case .unixDomainSocket: return nil
        }
        // Channels without a socket (e.g. embedded ones) have no conntrack entry: their local address it is.
        let conntrack = try? channel.pipeline.syncOperations.withUnsafeTransportIfAvailable(of: NIOBSDSocket.Handle.self) {
            OriginalDestinationLookup.conntrack(socket: $0, family: family)
        }
        let original = conntrack.flatMap { $0 }.map { SocketAddress($0) } ?? local
        // A connection made straight to the listener (not captured) has itself as destination; proxying
        // it there would loop, so there is no original destination.
        if original.port == listener.address.port && original == local {
            return nil
        }
        return original
    }
}

extension SocketAddress {
    /// NIO's address for a kernel one, without a host name (as NIO's own socket option reads give it).
    package init(_ address: IPSocketAddress) {
        switch address {
        case .v4(let sin): self.init(sin, host: "")
        case .v6(let sin6): self.init(sin6, host: "")
        }
    }
}
