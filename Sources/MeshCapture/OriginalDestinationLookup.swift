#if canImport(Glibc)
import Glibc
#endif

/// Where an intercepted connection was originally going, read from its socket. REDIRECT rewrites the
/// destination, so the kernel keeps the original in conntrack (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST);
/// TPROXY leaves it untouched, so it is the accepted socket's own local address.
public enum OriginalDestinationLookup {
    /// SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST (both 80).
    public static let socketOption: Int32 = 80

    /// The option's level for a socket of `family`: IPPROTO_IPV6 for AF_INET6, else IPPROTO_IP.
    public static func level(family: Int32) -> Int32 {
        family == AF_INET6 ? Int32(IPPROTO_IPV6) : Int32(IPPROTO_IP)
    }

    /// The destination conntrack recorded before NAT rewrote it, for a socket of `family` (the family of
    /// its local address); nil when there is none (not REDIRECTed, no conntrack entry, not TCP).
    public static func conntrack(socket fd: Int32, family: Int32) -> IPSocketAddress? {
        var original = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        guard getsockopt(fd, level(family: family), socketOption, &original, &len) == 0 else { return nil }
        return IPSocketAddress(original)
    }

    /// The socket's own local address (`getsockname`); nil when it has none or is not IPv4/IPv6.
    public static func localAddress(socket fd: Int32) -> IPSocketAddress? {
        var local = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return rc == 0 ? IPSocketAddress(local) : nil
    }
}
