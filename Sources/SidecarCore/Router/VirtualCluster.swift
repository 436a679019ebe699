/// `envoy.config.route.v3.VirtualCluster`: a named class of requests on a virtual host. Envoy keeps
/// per-virtual-cluster request statistics; routing does not depend on it.
public struct VirtualCluster: Sendable {
    public var name: String
    /// All must match (none: every request matches).
    public var headers: [HeaderMatcher]
}

extension VirtualCluster {
    /// The name Envoy gives requests that match none of a virtual host's virtual clusters.
    public static let catchAllName = "other"

    package static func decode(_ value: ConfigValue) throws -> VirtualCluster {
        let obj = try value.object()
        let name = try obj.required("name").nonEmptyString()
        let headers = try obj.list("headers").map(HeaderMatcher.decode)
        try obj.finish()
        return VirtualCluster(name: name, headers: headers)
    }
}

extension VirtualHost {
    /// Envoy's `VirtualHostImpl::virtualClusterFromEntries`: the first virtual cluster whose header matchers
    /// all match `header` (a lookup with repeated headers joined by ","), `"other"` when the virtual host
    /// declares virtual clusters but none matches, nil when it declares none.
    public func virtualClusterName(_ header: (String) -> String?) -> String? {
        if virtualClusters.isEmpty { return nil }
        for vc in virtualClusters where vc.headers.allSatisfy({ $0.matches(header) }) {
            return vc.name
        }
        return VirtualCluster.catchAllName
    }
}
