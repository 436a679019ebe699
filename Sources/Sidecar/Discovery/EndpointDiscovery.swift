import NIOConcurrencyHelpers
import NIOCore
import SidecarCore
import SidecarUpstream

/// The endpoints of EDS clusters, each from its `eds_cluster_config` file: the `ClusterLoadAssignment` named by
/// the cluster's `service_name`. A cluster's subscription starts when a config snapshot first has it (its file
/// read then, so the cluster starts with its endpoints) and stops when no snapshot has it; each file moved into
/// place afterwards replaces the cluster's hosts on every worker through `push`, keeping its pools and what is
/// known of the hosts that stay (as a DNS refresh does). Counted as Envoy counts EDS, under
/// `cluster.<name>.update_*`. A file without the cluster's assignment changes nothing (`update_empty`).
final class EndpointDiscovery: @unchecked Sendable {
    private let registry: StatsRegistry
    /// Hands a cluster's new hosts to the workers and its health checker (by cluster name); set by `start`.
    private var push: (@Sendable (String, [UpstreamHost]) -> Void)?
    private let lock = NIOLock()
    /// By cluster name. Guarded by `lock`.
    private var entries: [String: Entry] = [:]
    private var started = false

    private struct Entry {
        var config: EDSClusterConfig
        var subscription: FileSubscription<ClusterLoadAssignment>
        var watcher: FileMoveWatcher?
    }

    init(registry: StatsRegistry) {
        self.registry = registry
    }

    /// Subscribes every EDS cluster of `clusters` not subscribed yet (reading its file now) and unsubscribes
    /// those no longer there. After `start`, new subscriptions are watched at once.
    func sync(_ clusters: [Cluster]) throws {
        try lock.withLock {
            var wanted: [String: EDSClusterConfig] = [:]
            for c in clusters { if let eds = c.eds { wanted[c.name] = eds } }
            for (name, entry) in entries where wanted[name] != entry.config {
                entry.watcher?.stop()
                entries[name] = nil
            }
            for (name, config) in wanted where entries[name] == nil {
                let serviceName = config.serviceName
                let subscription = FileSubscription<ClusterLoadAssignment>(
                    source: config.source, what: "EDS", scopes: ["cluster.\(name)"], registry: registry,
                    emptyCounted: true, reloadCounted: false
                ) { path in
                    var file = try DiscoveryResources.endpoints(path: path)
                    let mine = file.resources.indices.filter { file.resources[$0].clusterName == serviceName }
                    file.resources = mine.map { file.resources[$0] }
                    file.documents = mine.map { file.documents[$0] }
                    return file
                }
                subscription.update { _ in }
                var entry = Entry(config: config, subscription: subscription)
                if started { entry.watcher = try watch(name, subscription) }
                entries[name] = entry
            }
        }
    }

    /// Watches every subscription's file from now on; `push` gets each accepted file's hosts.
    func start(push: @escaping @Sendable (String, [UpstreamHost]) -> Void) throws {
        try lock.withLock {
            started = true
            self.push = push
            for (name, entry) in entries where entry.watcher == nil {
                entries[name]!.watcher = try watch(name, entry.subscription)
            }
        }
    }

    func stop() {
        lock.withLock {
            for entry in entries.values { entry.watcher?.stop() }
            entries = [:]
        }
    }

    private func watch(_ name: String, _ subscription: FileSubscription<ClusterLoadAssignment>) throws
        -> FileMoveWatcher
    {
        let watcher = try subscription.watch { [weak self, weak subscription] in
            guard let self, let subscription else { return }
            subscription.update { assignments in
                guard let la = assignments.first else { return }
                let push = self.lock.withLock { self.push }
                push?(name, Self.hosts(la))
            }
        }
        watcher.start()
        return watcher
    }

    /// The hosts of an EDS cluster as its file gave them last (none before a file was accepted).
    func hosts(for cluster: Cluster) -> [UpstreamHost] {
        let la = lock.withLock { entries[cluster.name]?.subscription.current.resources.first }
        return la.map(Self.hosts) ?? []
    }

    private static func hosts(_ la: ClusterLoadAssignment) -> [UpstreamHost] {
        la.endpoints.compactMap { ep in
            guard let address = try? SocketAddress(ipAddress: ep.address.address, port: ep.address.port) else {
                return nil
            }
            return UpstreamHost(address: address, hostname: ep.hostname ?? ep.address.address, weight: ep.weight)
        }
    }

    /// The subscriptions, for /config_dump.
    var subscriptions: [(cluster: String, subscription: FileSubscription<ClusterLoadAssignment>)] {
        lock.withLock { entries.map { ($0.key, $0.value.subscription) }.sorted { $0.cluster < $1.cluster } }
    }
}
