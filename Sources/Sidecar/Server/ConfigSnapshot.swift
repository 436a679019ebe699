import SidecarCore
import SidecarUpstream

/// The config a stream runs on: every HTTP connection manager's route table and every cluster, resolved into each
/// other once, when the snapshot is built. Immutable. A worker holds the current one; a stream takes it when it
/// starts and keeps it to the end, so installing a new snapshot (what xDS will do) changes where the next request
/// goes and never the request in flight. Envoy draws the same line: routes (RDS) and clusters (CDS) change under
/// running listeners, while listeners and their filters (LDS) are replaced, not changed.
///
/// Clusters are found by name through the snapshot, not by a position fixed when listeners were bound: route
/// targets carry their cluster's `ClusterSlot` in this snapshot, and workers keep their thread-local clusters at
/// the same slots (`WorkerSnapshot`).
final class ConfigSnapshot: Sendable {
    /// Counts up from 1 with each snapshot the server builds (admin and logs name it).
    let version: Int
    /// Indexed by `ClusterSlot`.
    let clusters: [ClusterInfo]
    /// Each HTTP connection manager's route table, indexed by its listener runtime's `routeTable`.
    let routeTables: [RouteTable]
    /// Each tcp_proxy's cluster, indexed by its listener runtime's `tcpProxy`.
    let tcpProxyClusters: [ClusterSlot]
    /// The listeners' network filter chains this snapshot's tables line up with.
    let shape: [[ChainTable]]
    private let slotsByName: [String: ClusterSlot]

    /// A route configuration with its clusters resolved in this snapshot. A class, so a stream takes it with one
    /// reference instead of copying the table's fields.
    final class RouteTable: Sendable {
        let config: RouteConfiguration
        init(_ config: RouteConfiguration) { self.config = config }
    }

    /// Where a filter chain finds its part of a snapshot. The chains of every listener, in config order (the
    /// default chain last), number their route tables and tcp_proxy clusters from 0.
    enum ChainTable: Equatable, Sendable {
        case routes(Int)
        case tcpProxy(Int)
    }

    init(version: Int, clusters: [ClusterInfo], routeTables: [RouteTable] = [],
         tcpProxyClusters: [ClusterSlot] = [], shape: [[ChainTable]] = []) {
        self.version = version
        self.clusters = clusters
        var slots: [String: ClusterSlot] = [:]
        for (i, c) in clusters.enumerated() { slots[c.name] = ClusterSlot(index: i) }
        slotsByName = slots
        self.routeTables = routeTables
        self.tcpProxyClusters = tcpProxyClusters
        self.shape = shape
    }

    /// The tables of `bootstrap`'s listeners, resolved against `clusters` (the infos for `bootstrap.clusters`, in
    /// order, from `ClusterManager.infos`).
    convenience init(version: Int, bootstrap: Bootstrap, clusters: [ClusterInfo], runtime: Runtime) throws {
        var slots: [String: ClusterSlot] = [:]
        for (i, c) in clusters.enumerated() { slots[c.name] = ClusterSlot(index: i) }
        var routes: [RouteTable] = []
        var tcp: [ClusterSlot] = []
        for chains in bootstrap.listeners.map(Self.networkChains) {
            for chain in chains {
                switch chain.network {
                case .httpConnectionManager(let hcm):
                    var table = hcm.routeConfig
                    table.runtime = runtime
                    routes.append(RouteTable(table.resolvingClusters { slots[$0] }))
                case .tcpProxy(let proxy):
                    guard let slot = slots[proxy.cluster] else {
                        throw ServerError("tcp_proxy refers to unknown cluster '\(proxy.cluster)'")
                    }
                    tcp.append(slot)
                }
            }
        }
        self.init(version: version, clusters: clusters, routeTables: routes, tcpProxyClusters: tcp,
                  shape: Self.shape(of: bootstrap.listeners))
    }

    /// A cluster by name: `cluster_header`, admin and health-check filters; requests to a named cluster use the
    /// slot their route resolved instead.
    func slot(named name: String) -> ClusterSlot? { slotsByName[name] }

    subscript(slot: ClusterSlot) -> ClusterInfo { clusters[slot.index] }

    /// A listener's filter chains in the order snapshots number them: the matched chains, then the default one.
    static func networkChains(_ listener: Listener) -> [FilterChain] {
        listener.filterChains + [listener.defaultFilterChain].compactMap { $0 }
    }

    /// Which table each chain of each listener uses.
    static func shape(of listeners: [Listener]) -> [[ChainTable]] {
        var http = 0
        var tcp = 0
        return listeners.map { l in
            networkChains(l).map { chain in
                switch chain.network {
                case .httpConnectionManager:
                    http += 1
                    return .routes(http - 1)
                case .tcpProxy:
                    tcp += 1
                    return .tcpProxy(tcp - 1)
                }
            }
        }
    }
}
