import Glibc

/// Where an intercepted connection was originally going. REDIRECT rewrites the destination, so the kernel
/// keeps the original in conntrack (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST); TPROXY leaves it untouched,
/// so it is the accepted socket's own local address.
public struct OriginalDestination: Equatable, Sendable, CustomStringConvertible {
    public enum Source: String, Sendable { case conntrack, localAddress }

    public var address: String
    public var port: UInt16
    public var source: Source

    public var description: String {
        address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
    }

    /// SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST (both 80).
    static let soOriginalDst: Int32 = 80

    /// Looks up the original destination of an accepted socket.
    public static func of(socket fd: Int32) -> OriginalDestination? {
        var local = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let family = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        } == 0 ? Int32(local.ss_family) : AF_INET

        var original = sockaddr_storage()
        var olen = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let level = family == AF_INET6 ? Int32(IPPROTO_IPV6) : Int32(IPPROTO_IP)
        if getsockopt(fd, level, soOriginalDst, &original, &olen) == 0, let (a, p) = decode(&original) {
            return OriginalDestination(address: a, port: p, source: .conntrack)
        }
        if let (a, p) = decode(&local) {
            return OriginalDestination(address: a, port: p, source: .localAddress)
        }
        return nil
    }

    static func decode(_ storage: inout sockaddr_storage) -> (String, UInt16)? {
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                    var addr = sin.pointee.sin_addr
                    var buf = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
                    inet_ntop(AF_INET, &addr, &buf, socklen_t(buf.count))
                    return (String(cString: buf), UInt16(bigEndian: sin.pointee.sin_port))
                }
            }
        case AF_INET6:
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                    var addr = sin6.pointee.sin6_addr
                    var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
                    inet_ntop(AF_INET6, &addr, &buf, socklen_t(buf.count))
                    return (String(cString: buf), UInt16(bigEndian: sin6.pointee.sin6_port))
                }
            }
        default: return nil
        }
    }
}
