import NIOCore
import NIOHTTP1

/// The `x-envoy-*` request headers that steer retries and timeouts. Envoy honours them only on requests it
/// considers internal (`ConnectionManagerUtility::mutateRequestHeaders`): without `use_remote_address`, that is
/// a request whose `x-forwarded-for` holds exactly one address and that address is internal (RFC 1918,
/// loopback). Other requests have them removed before routing (`cleanInternalHeaders`), so a client cannot
/// make the mesh retry on its behalf.
enum RetryHeaders {
    static let names = [
        "x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries", "x-envoy-retriable-status-codes",
        "x-envoy-retriable-header-names", "x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms",
        "x-envoy-upstream-rq-timeout-alt-response", "x-envoy-expected-rq-timeout-ms", "x-envoy-hedge-on-per-try-timeout",
    ]

    static func trusted(_ headers: HTTPHeaders) -> Bool {
        let xff = headers["x-forwarded-for"]
        guard xff.count == 1 else { return false }
        let parts = xff[0].split(separator: ",")
        guard parts.count == 1 else { return false }
        let text = parts[0].trimmingCharacters(in: .whitespaces)
        guard let address = try? SocketAddress(ipAddress: text, port: 0) else { return false }
        return isInternal(address)
    }

    static func strip(_ headers: inout HTTPHeaders) {
        for n in names where headers.contains(name: n) { headers.remove(name: n) }
    }

    /// RFC 1918, loopback and IPv6 unique-local addresses (Envoy's default internal addresses).
    static func isInternal(_ address: SocketAddress) -> Bool {
        switch address {
        case .v4(let a):
            let ip = UInt32(bigEndian: a.address.sin_addr.s_addr)
            return ip >> 24 == 10 || ip >> 20 == 0xAC1 || ip >> 16 == 0xC0A8 || ip >> 24 == 127
        case .v6(let a):
            var addr = a.address.sin6_addr
            return withUnsafeBytes(of: &addr) { b in
                (b[0] & 0xFE) == 0xFC || (b[0..<15].allSatisfy { $0 == 0 } && b[15] == 1)
            }
        case .unixDomainSocket:
            return true
        }
    }
}
