#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 socket address as the kernel hands it out (`getsockname`, `getsockopt`).
public enum IPSocketAddress: Sendable {
    case v4(sockaddr_in)
    case v6(sockaddr_in6)

    /// nil unless the storage holds an AF_INET or AF_INET6 address.
    public init?(_ storage: sockaddr_storage) {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            self = .v4(withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee } })
        case AF_INET6:
            self = .v6(withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee } })
        default:
            return nil
        }
    }

    /// AF_INET or AF_INET6.
    public var family: Int32 {
        switch self {
        case .v4: AF_INET
        case .v6: AF_INET6
        }
    }

    /// The port, in host order.
    public var port: UInt16 {
        switch self {
        case .v4(let sin): UInt16(bigEndian: sin.sin_port)
        case .v6(let sin6): UInt16(bigEndian: sin6.sin6_port)
        }
    }

    /// The address as `inet_ntop` writes it (dotted quad, or RFC 5952 IPv6).
    public var addressText: String {
        switch self {
        case .v4(let sin):
            var addr = sin.sin_addr
            var buf = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            inet_ntop(AF_INET, &addr, &buf, socklen_t(buf.count))
            return String(cString: buf)
        case .v6(let sin6):
            var addr = sin6.sin6_addr
            var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            inet_ntop(AF_INET6, &addr, &buf, socklen_t(buf.count))
            return String(cString: buf)
        }
    }
}
