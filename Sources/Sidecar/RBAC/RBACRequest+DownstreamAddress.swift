import NIOCore
import SidecarCore

extension RBACRequest {
    /// Envoy's downstream local address: the original destination when the listener restores it
    /// (original_dst, transparent, use_original_dst), else the socket's own. `known`: already looked up.
    static func downstreamLocalAddress(_ channel: Channel, listener: Listener, known: SocketAddress?)
        -> SocketAddress?
    {
        if let known { return known }
        if listener.originalDestination || listener.transparent || listener.useOriginalDst {
            return OriginalDestination.lookup(channel, listener: listener) ?? channel.localAddress
        }
        return channel.localAddress
    }
}
