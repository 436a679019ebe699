import NIOCore
import SidecarCore

/// One endpoint of a cluster, as resolved.
public struct UpstreamHost: Sendable, Hashable {
    public var address: SocketAddress
    /// The endpoint's hostname: the DNS name for DNS clusters, or `endpoint.hostname` when set.
    public var hostname: String
    public var weight: UInt32
    /// The priority and locality of the endpoint's `LocalityLbEndpoints` entry.
    public var group: Cluster.EndpointGroup
    /// `health_status` from the load assignment: UNHEALTHY, DRAINING and TIMEOUT keep the host out of the
    /// healthy set whatever its health checks say.
    public var healthStatus: Cluster.EndpointHealthStatus
    /// Where active health checks go (`health_check_config.port_value`); nil: `address`.
    public var healthCheckPort: Int?

    package init(address: SocketAddress, hostname: String, weight: UInt32, group: Cluster.EndpointGroup = .init(),
                 healthStatus: Cluster.EndpointHealthStatus = .UNKNOWN, healthCheckPort: Int? = nil) {
        self.address = address
        self.hostname = hostname
        self.weight = weight
        self.group = group
        self.healthStatus = healthStatus
        self.healthCheckPort = healthCheckPort
    }

    package init(_ endpoint: Cluster.Endpoint, address: SocketAddress) {
        self.init(address: address, hostname: endpoint.hostname ?? endpoint.address.address, weight: endpoint.weight,
                  group: endpoint.group, healthStatus: endpoint.healthStatus, healthCheckPort: endpoint.healthCheckPort)
    }

    /// The address active health checks connect to.
    public var healthCheckAddress: SocketAddress {
        guard let port = healthCheckPort else { return address }
        var a = address
        a.port = port
        return a
    }

    public var description: String { "\(address.ipAddress ?? "?"):\(address.port ?? 0)" }
}
