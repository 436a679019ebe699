import Glibc
import Testing
import MeshCapture

@Suite struct OriginalDestinationLookupTests {
    @Test func theOptionIsSO_ORIGINAL_DSTAtTheFamilysLevel() {
        #expect(OriginalDestinationLookup.socketOption == 80)
        #expect(OriginalDestinationLookup.level(family: AF_INET) == Int32(IPPROTO_IP))
        #expect(OriginalDestinationLookup.level(family: AF_INET6) == Int32(IPPROTO_IPV6))
    }

    @Test func socketAddressesDecodeFromStorage() {
        var v4 = sockaddr_in()
        v4.sin_family = sa_family_t(AF_INET)
        v4.sin_port = UInt16(8080).bigEndian
        _ = inet_pton(AF_INET, "198.18.0.7", &v4.sin_addr)
        let a = IPSocketAddress(Self.storage(v4))
        #expect(a?.family == AF_INET && a?.port == 8080 && a?.addressText == "198.18.0.7")

        var v6 = sockaddr_in6()
        v6.sin6_family = sa_family_t(AF_INET6)
        v6.sin6_port = UInt16(443).bigEndian
        _ = inet_pton(AF_INET6, "fd00::1:0:0:1", &v6.sin6_addr)
        let b = IPSocketAddress(Self.storage(v6))
        #expect(b?.family == AF_INET6 && b?.port == 443 && b?.addressText == "fd00::1:0:0:1")

        var unix = sockaddr_storage()
        unix.ss_family = sa_family_t(AF_UNIX)
        #expect(IPSocketAddress(unix) == nil)
        #expect(IPSocketAddress(sockaddr_storage()) == nil)
    }

    /// A connection that no NAT rewrote has no conntrack original destination; its local address is where
    /// it was going.
    @Test func anUncapturedConnectionHasOnlyItsLocalAddress() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(listener >= 0)
        defer { close(listener) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let bound = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(bound == 0 && Glibc.listen(listener, 1) == 0)
        let port = try #require(OriginalDestinationLookup.localAddress(socket: listener)).port
        #expect(port != 0)

        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        sa.sin_port = port.bigEndian
        let connected = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(connected == 0)
        let accepted = accept(listener, nil, nil)
        #expect(accepted >= 0)
        defer { close(accepted) }

        #expect(OriginalDestinationLookup.conntrack(socket: accepted, family: AF_INET) == nil)
        let local = try #require(OriginalDestinationLookup.localAddress(socket: accepted))
        #expect(local.addressText == "127.0.0.1" && local.port == port)
        #expect(OriginalDestinationLookup.localAddress(socket: -1) == nil)
    }

    static func storage<T>(_ value: T) -> sockaddr_storage {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { out in
            withUnsafeBytes(of: value) { out.copyMemory(from: $0) }
        }
        return storage
    }
}
