/// `envoy.config.endpoint.v3.ClusterLoadAssignment`: a cluster's endpoints.
public struct ClusterLoadAssignment: Sendable, Equatable {
    public var clusterName: String
    public var endpoints: [Cluster.Endpoint]

    public init(clusterName: String, endpoints: [Cluster.Endpoint]) {
        self.clusterName = clusterName
        self.endpoints = endpoints
    }

    package static func decode(_ value: ConfigValue) throws -> ClusterLoadAssignment {
        let la = try Cluster.decodeLoadAssignment(value, requireIP: true)
        if la.clusterName.isEmpty { throw value.error("missing required field 'cluster_name'") }
        return la
    }
}
