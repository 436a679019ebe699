import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Where an accepted connection was going before capture, as Envoy's original_dst listener filter finds
/// it: SO_ORIGINAL_DST (IP6T_SO_ORIGINAL_DST) from conntrack after a REDIRECT, else the socket's local
/// address (a TPROXY'd connection keeps its destination).
enum OriginalDestination {
    static let soOriginalDst: Int32 = 80

    static func lookup(_ channel: Channel, listener: Listener) -> SocketAddress? {
        guard let local = channel.localAddress else { return nil }
        var found: SocketAddress?
        if let provider = channel as? SocketOptionProvider {
            switch local {
            case .v4:
                let f: EventLoopFuture<sockaddr_in> = provider.unsafeGetSocketOption(
                    level: SocketOptionLevel(IPPROTO_IP), name: SocketOptionName(soOriginalDst))
                // On the channel's own loop the option is read synchronously: the future is already complete.
                f.assumeIsolated().whenSuccess { found = SocketAddress($0, host: "") }
            case .v6:
                let f: EventLoopFuture<sockaddr_in6> = provider.unsafeGetSocketOption(
                    level: SocketOptionLevel(IPPROTO_IPV6), name: SocketOptionName(soOriginalDst))
                f.assumeIsolated().whenSuccess { found = SocketAddress($0, host: "") }
            case .unixDomainSocket:
                return nil
            }
        }
        let original = found ?? local
        // A connection made straight to the listener (not captured) has itself as destination; proxying
        // it there would loop, so there is no original destination.
        if original.port == listener.address.port && original == local {
            return nil
        }
        return original
    }
}
