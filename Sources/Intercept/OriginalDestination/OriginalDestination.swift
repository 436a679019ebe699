import Glibc
import MeshCapture

/// Where an intercepted connection was originally going, as `sidecar-init validate` reports it. REDIRECT
/// rewrites the destination, so the kernel keeps the original in conntrack (SO_ORIGINAL_DST,
/// IP6T_SO_ORIGINAL_DST); TPROXY leaves it untouched, so it is the accepted socket's own local address.
/// The lookup itself is MeshCapture's `OriginalDestinationLookup`, shared with the sidecar.
public struct OriginalDestination: Equatable, Sendable, CustomStringConvertible {
    public enum Source: String, Sendable { case conntrack, localAddress }

    public var address: String
    public var port: UInt16
    public var source: Source

    public var description: String {
        address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
    }

    /// Looks up the original destination of an accepted socket: conntrack's, else the local address.
    public static func of(socket fd: Int32) -> OriginalDestination? {
        let local = OriginalDestinationLookup.localAddress(socket: fd)
        if let original = OriginalDestinationLookup.conntrack(socket: fd, family: local?.family ?? AF_INET) {
            return OriginalDestination(original, source: .conntrack)
        }
        return local.map { OriginalDestination($0, source: .localAddress) }
    }
}

extension OriginalDestination {
    init(_ socketAddress: IPSocketAddress, source: Source) {
        self.init(address: socketAddress.addressText, port: socketAddress.port, source: source)
    }
}
