#if canImport(Glibc)
import Glibc
#endif

extension IPAddress {
    /// The address as Envoy's `addressAsString` writes it: dotted IPv4, or RFC 5952 IPv6 (lowercase, the
    /// longest run of zero groups as "::", no brackets).
    package var text: String {
        switch self {
        case .v4(let a):
            return "\(a >> 24).\(a >> 16 & 0xff).\(a >> 8 & 0xff).\(a & 0xff)"
        case .v6(let high, let low):
            var bytes = in6_addr()
            withUnsafeMutableBytes(of: &bytes) { raw in
                for i in 0..<8 {
                    raw[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i)))
                    raw[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i)))
                }
            }
            var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            guard inet_ntop(AF_INET6, &bytes, &buffer, socklen_t(buffer.count)) != nil else { return "" }
            let length = buffer.firstIndex(of: 0) ?? buffer.count
            return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }
}
