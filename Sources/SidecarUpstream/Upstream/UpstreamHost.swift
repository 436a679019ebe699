import NIOCore

/// One endpoint of a cluster, as resolved.
public struct UpstreamHost: Sendable, Hashable {
    public var address: SocketAddress
    /// The endpoint's hostname: the DNS name for DNS clusters, or `endpoint.hostname` when set.
    public var hostname: String
    public var weight: UInt32

    package init(address: SocketAddress, hostname: String, weight: UInt32) {
        self.address = address
        self.hostname = hostname
        self.weight = weight
    }

    public var description: String { "\(address.ipAddress ?? "?"):\(address.port ?? 0)" }
}
