import NIOCore

/// One endpoint of a cluster, as resolved.
public struct UpstreamHost: Sendable, Hashable {
    public var address: SocketAddress
    /// The endpoint's hostname: the DNS name for DNS clusters, or `endpoint.hostname` when set.
    public var hostname: String
    public var weight: UInt32

    public var description: String { "\(address.ipAddress ?? "?"):\(address.port ?? 0)" }
}
