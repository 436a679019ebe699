import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// An IP address as two integers, so that RBAC can test ranges without allocating (`SocketAddress`'s
/// byte view is an array).
package enum IPAddress: Sendable, Equatable {
    case v4(UInt32)
    case v6(high: UInt64, low: UInt64)

    /// The address of a socket. An IPv4-mapped IPv6 peer of a dual-stack socket is its IPv4 address, as
    /// Envoy reports it; a Unix socket has none.
    package init?(_ address: SocketAddress) {
        switch address {
        case .v4(let a):
            self = .v4(UInt32(bigEndian: a.address.sin_addr.s_addr))
        case .v6(let a):
            self = Self.v6(bytes: a.address.sin6_addr, mapToV4: true)
        case .unixDomainSocket:
            return nil
        }
    }

    /// A textual address (Envoy's `parseInternetAddressNoThrow`): dotted IPv4 or IPv6 without brackets or
    /// port. An IPv4-mapped IPv6 text stays IPv6, as in Envoy.
    package init?(parsing text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self = .v4(UInt32(bigEndian: v4.s_addr))
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        self = Self.v6(bytes: v6, mapToV4: false)
    }

    private static func v6(bytes: in6_addr, mapToV4: Bool) -> IPAddress {
        var high: UInt64 = 0
        var low: UInt64 = 0
        withUnsafeBytes(of: bytes) { raw in
            for i in 0..<8 { high = high << 8 | UInt64(raw[i]) }
            for i in 8..<16 { low = low << 8 | UInt64(raw[i]) }
        }
        if mapToV4 && high == 0 && low >> 32 == 0xffff {
            return .v4(UInt32(truncatingIfNeeded: low))
        }
        return .v6(high: high, low: low)
    }
}

/// `envoy.config.core.v3.CidrRange` as Envoy's RBAC reads it (`Network::Address::CidrRange`): an address
/// matches only a range of its own family; `/0` matches every address of that family.
package struct IPRange: Sendable, Equatable {
    package let network: IPAddress
    package let prefixLength: Int

    /// `prefixLength` is clamped to the family's width, as Envoy clamps a `prefix_len` of 40 on IPv4 to 32.
    package init(_ address: IPAddress, prefixLength: Int) {
        switch address {
        case .v4(let a):
            let length = min(max(prefixLength, 0), 32)
            self.prefixLength = length
            network = .v4(a & Self.mask32(length))
        case .v6(let high, let low):
            let length = min(max(prefixLength, 0), 128)
            self.prefixLength = length
            network = .v6(high: high & Self.mask64(length), low: low & Self.mask64(length - 64))
        }
    }

    package func contains(_ address: IPAddress?) -> Bool {
        switch (network, address) {
        case (.v4(let n), .v4(let a)?):
            return a & Self.mask32(prefixLength) == n
        case (.v6(let nh, let nl), .v6(let ah, let al)?):
            return ah & Self.mask64(prefixLength) == nh && al & Self.mask64(prefixLength - 64) == nl
        case (.v4, .v6?), (.v6, .v4?), (_, nil):
            return false
        }
    }

    /// The top `bits` bits set (none for bits <= 0, all for bits >= 32).
    private static func mask32(_ bits: Int) -> UInt32 {
        bits <= 0 ? 0 : bits >= 32 ? .max : ~(UInt32.max >> UInt32(bits))
    }

    private static func mask64(_ bits: Int) -> UInt64 {
        bits <= 0 ? 0 : bits >= 64 ? .max : ~(UInt64.max >> UInt64(bits))
    }
}
