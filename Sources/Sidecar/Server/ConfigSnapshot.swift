import NIOCore
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
    /// Each HTTP connection manager's route table, indexed by its listener runtime's `routeTable` (numbers no
    /// running listener uses hold an empty table).
    let routeTables: [RouteTable]
    /// Each tcp_proxy's cluster, indexed by its listener runtime's `tcpProxy`.
    let tcpProxyClusters: [ClusterSlot]
    /// The listener generation each bound socket hands its new connections to, by socket slot (see
    /// `SidecarServer+Listeners.swift`): an updated listener takes over its socket when its snapshot is installed.
    let acceptors: [Int: ChainedListenerRuntime]
    /// The active listeners by address, for `use_original_dst` hand-offs.
    let handoff: [SocketAddressConfig: ChainedListenerRuntime]
    private let slotsByName: [String: ClusterSlot]

    /// A route configuration with its clusters resolved in this snapshot. A class, so a stream takes it with one
    /// reference instead of copying the table's fields.
    final class RouteTable: Sendable {
        let config: RouteConfiguration
        init(_ config: RouteConfiguration) { self.config = config }
    }

    /// Where a filter chain finds its part of a snapshot: the number of its route table or tcp_proxy cluster. A
    /// listener generation keeps its numbers for life, so a snapshot made after listeners were added or removed
    /// still has every running chain's table where its connections look.
    enum ChainTable: Equatable, Sendable {
        case routes(Int)
        case tcpProxy(Int)
    }

    /// The filter chains of one listener generation with the tables they are numbered to.
    struct ListenerTables {
        var chains: [FilterChain]
        var tables: [ChainTable]
    }

    init(version: Int, clusters: [ClusterInfo], routeTables: [RouteTable] = [],
         tcpProxyClusters: [ClusterSlot] = [], acceptors: [Int: ChainedListenerRuntime] = [:],
         handoff: [SocketAddressConfig: ChainedListenerRuntime] = [:]) {
        self.version = version
        self.clusters = clusters
        var slots: [String: ClusterSlot] = [:]
        for (i, c) in clusters.enumerated() { slots[c.name] = ClusterSlot(index: i) }
        slotsByName = slots
        self.routeTables = routeTables
        self.tcpProxyClusters = tcpProxyClusters
        self.acceptors = acceptors
        self.handoff = handoff
    }

    /// An unused route table number's entry (its listener drained away).
    private static let unusedTable = RouteTable(.empty)

    /// The tables of `listeners`' chains, resolved against `clusters` (the infos for the config's clusters, in
    /// order, from `ClusterManager.infos`).
    convenience init(version: Int, listeners: [ListenerTables], clusters: [ClusterInfo], runtime: Runtime,
                     acceptors: [Int: ChainedListenerRuntime] = [:],
                     handoff: [SocketAddressConfig: ChainedListenerRuntime] = [:]) throws {
        var slots: [String: ClusterSlot] = [:]
        for (i, c) in clusters.enumerated() { slots[c.name] = ClusterSlot(index: i) }
        var routes: [RouteTable] = []
        var tcp: [ClusterSlot] = []
        for listener in listeners {
            for (chain, table) in zip(listener.chains, listener.tables) {
                switch (chain.network, table) {
                case (.httpConnectionManager(let hcm), .routes(let n)):
                    var config = hcm.routeConfig
                    config.runtime = runtime
                    if routes.count <= n { routes += Array(repeating: Self.unusedTable, count: n + 1 - routes.count) }
                    routes[n] = RouteTable(config.resolvingClusters { slots[$0] })
                case (.tcpProxy(let proxy), .tcpProxy(let n)):
                    guard let slot = slots[proxy.cluster] else {
                        throw ServerError("tcp_proxy refers to unknown cluster '\(proxy.cluster)'")
                    }
                    if tcp.count <= n { tcp += Array(repeating: ClusterSlot(index: 0), count: n + 1 - tcp.count) }
                    tcp[n] = slot
                default:
                    preconditionFailure("a chain's table does not match its network filter")
                }
            }
        }
        self.init(version: version, clusters: clusters, routeTables: routes, tcpProxyClusters: tcp,
                  acceptors: acceptors, handoff: handoff)
    }

    /// The tables of `bootstrap`'s listeners, numbered in order (tests and tools).
    convenience init(version: Int, bootstrap: Bootstrap, clusters: [ClusterInfo], runtime: Runtime) throws {
        let numbers = Self.shape(of: bootstrap.listeners)
        try self.init(version: version,
                      listeners: zip(bootstrap.listeners, numbers).map {
                          ListenerTables(chains: Self.networkChains($0.0), tables: $0.1)
                      },
                      clusters: clusters, runtime: runtime)
    }

    /// The listener a connection `use_original_dst` recovered `destination` for is handed to: the active listener
    /// at that exact address, else at the wildcard address of its family on that port; never the listener
    /// (`from`, its generation tag) that took the connection.
    func handoffTarget(for destination: SocketAddress, from tag: Int) -> ChainedListenerRuntime? {
        guard let ip = destination.ipAddress, let port = destination.port else { return nil }
        let wildcard = destination.protocol == .inet6 ? "::" : "0.0.0.0"
        let target = handoff[SocketAddressConfig(address: ip, port: port)]
            ?? handoff[SocketAddressConfig(address: wildcard, port: port)]
        return target?.tag == tag ? nil : target
    }

    /// A cluster by name: `cluster_header`, admin and health-check filters; requests to a named cluster use the
    /// slot their route resolved instead.
    func slot(named name: String) -> ClusterSlot? { slotsByName[name] }

    subscript(slot: ClusterSlot) -> ClusterInfo { clusters[slot.index] }

    /// A listener's filter chains in the order snapshots number them: the matched chains, then the default one.
    static func networkChains(_ listener: Listener) -> [FilterChain] {
        listener.filterChains + [listener.defaultFilterChain].compactMap { $0 }
    }

    /// Tables numbered in order: each chain of each listener its own, from 0.
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
