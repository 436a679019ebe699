import Atomics
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import SidecarCore
import SidecarUpstream

/// The endpoints of EDS clusters, from their `eds_cluster_config` files: a cluster's hosts are the
/// `ClusterLoadAssignment` named by its `service_name`. Each file is read once per change however many clusters
/// take their endpoints from it: its subscription starts when a config snapshot first has one of them (the file
/// read then, so the cluster starts with its endpoints) and stops when no snapshot has any. Each file moved into
/// place afterwards replaces, on every worker and in its health checker, the hosts of each cluster whose
/// assignment changed (`push`), keeping its pools and what is known of the hosts that stay, as a DNS refresh
/// does. Counted as Envoy counts EDS, under `cluster.<name>.update_*`; a file without a cluster's assignment
/// leaves that cluster's hosts as they are and counts its `update_empty`.
final class EndpointDiscovery: @unchecked Sendable {
    private let registry: StatsRegistry
    /// Hands a cluster's new hosts to the workers and its health checker (by cluster name); set by `start`.
    private var push: (@Sendable (String, [UpstreamHost]) -> Void)?
    private let lock = NIOLock()
    /// By file. Guarded by `lock`.
    private var files: [FileConfigSource: File] = [:]
    private var started = false

    private struct File {
        var subscription: FileSubscription<ClusterLoadAssignment>
        var watcher: FileMoveWatcher?
        /// The clusters reading this file, by name.
        var clusters: [String: Member] = [:]
    }

    private struct Member {
        var serviceName: String
        /// The endpoints last handed to the workers (nil: none yet), with the document and version they came in.
        var endpoints: [Cluster.Endpoint]?
        var accepted: Accepted?
        let empty: ManagedAtomic<Int>
    }

    /// A cluster's assignment as accepted last: what /config_dump shows.
    struct Accepted {
        var document: String
        var versionInfo: String
        var at: Date?
    }

    init(registry: StatsRegistry) {
        self.registry = registry
    }

    /// Subscribes every EDS cluster of `clusters` not subscribed yet (reading its file now, unless another
    /// cluster reads it already) and unsubscribes those no longer there. After `start`, new files are watched at
    /// once.
    func sync(_ clusters: [Cluster]) throws {
        try lock.withLock {
            var wanted: [String: EDSClusterConfig] = [:]
            for c in clusters { if let eds = c.eds { wanted[c.name] = eds } }
            for source in Array(files.keys) {
                for (name, member) in files[source]!.clusters
                where wanted[name]?.source != source || wanted[name]?.serviceName != member.serviceName {
                    files[source]!.clusters[name] = nil
                }
                if files[source]!.clusters.isEmpty {
                    files[source]!.watcher?.stop()
                    files[source] = nil
                }
            }
            for (name, config) in wanted.sorted(by: { $0.key < $1.key })
            where files[config.source]?.clusters[name] == nil {
                if files[config.source] == nil {
                    let subscription = FileSubscription<ClusterLoadAssignment>(
                        source: config.source, what: "EDS", scopes: [], registry: registry, reloadCounted: false
                    ) { try DiscoveryResources.endpoints(path: $0) }
                    subscription.update { _ in }
                    files[config.source] = File(subscription: subscription)
                    if started { files[config.source]!.watcher = try watch(config.source) }
                }
                let file = files[config.source]!
                file.subscription.register(scope: "cluster.\(name)", in: registry)
                let empty = ManagedAtomic(0)
                registry.registerComputed("cluster.\(name).update_empty", kind: .counter) {
                    empty.load(ordering: .relaxed)
                }
                let state = file.subscription.current
                let i = state.resources.firstIndex { $0.clusterName == config.serviceName }
                files[config.source]!.clusters[name] = Member(
                    serviceName: config.serviceName, endpoints: i.map { state.resources[$0].endpoints },
                    accepted: i.map { Accepted(document: state.documents[$0], versionInfo: state.versionInfo,
                                               at: state.lastUpdated) },
                    empty: empty)
            }
        }
    }

    /// Watches every file from now on; `push` gets the hosts of each cluster an accepted file changes.
    func start(push: @escaping @Sendable (String, [UpstreamHost]) -> Void) throws {
        try lock.withLock {
            started = true
            self.push = push
            for (source, file) in files where file.watcher == nil {
                files[source]!.watcher = try watch(source)
            }
        }
    }

    func stop() {
        lock.withLock {
            for file in files.values { file.watcher?.stop() }
            files = [:]
        }
    }

    private func watch(_ source: FileConfigSource) throws -> FileMoveWatcher {
        let subscription = files[source]!.subscription
        let watcher = try subscription.watch { [weak self] in self?.reload(source) }
        watcher.start()
        return watcher
    }

    /// The file at `source` was replaced: read it once, and push each of its clusters' changed hosts.
    private func reload(_ source: FileConfigSource) {
        let subscription = lock.withLock { files[source]?.subscription }
        guard let subscription else { return }
        var changed: [(String, [UpstreamHost])] = []
        let refused = subscription.update { _ in }
        guard refused == nil else { return }
        let state = subscription.current
        let push = lock.withLock { () -> (@Sendable (String, [UpstreamHost]) -> Void)? in
            guard let members = files[source]?.clusters else { return nil }
            for (name, member) in members {
                guard let i = state.resources.firstIndex(where: { $0.clusterName == member.serviceName }) else {
                    member.empty.wrappingIncrement(ordering: .relaxed)
                    continue
                }
                files[source]!.clusters[name]!.accepted = Accepted(
                    document: state.documents[i], versionInfo: state.versionInfo, at: state.lastUpdated)
                let la = state.resources[i]
                guard la.endpoints != member.endpoints else { continue }
                files[source]!.clusters[name]!.endpoints = la.endpoints
                changed.append((name, Self.hosts(la)))
            }
            return self.push
        }
        for (name, hosts) in changed { push?(name, hosts) }
    }

    /// The hosts of an EDS cluster as its file gave them last (none before a file had its assignment); a later
    /// file without its assignment leaves them.
    func hosts(for cluster: Cluster) -> [UpstreamHost] {
        let endpoints = lock.withLock { cluster.eds.flatMap { files[$0.source]?.clusters[cluster.name]?.endpoints } }
        return endpoints.map { Self.hosts(ClusterLoadAssignment(clusterName: cluster.name, endpoints: $0)) } ?? []
    }

    private static func hosts(_ la: ClusterLoadAssignment) -> [UpstreamHost] {
        la.endpoints.compactMap { ep in
            guard let address = try? SocketAddress(ipAddress: ep.address.address, port: ep.address.port) else {
                return nil
            }
            return UpstreamHost(address: address, hostname: ep.hostname ?? ep.address.address, weight: ep.weight)
        }
    }

    /// Each EDS cluster's assignment as accepted last, and the last refusal of its file, for /config_dump.
    var assignments: [(cluster: String, accepted: Accepted, refusal: FileSubscription<ClusterLoadAssignment>.Refusal?)] {
        lock.withLock {
            var out: [(cluster: String, accepted: Accepted, refusal: FileSubscription<ClusterLoadAssignment>.Refusal?)] = []
            for file in files.values {
                let refusal = file.subscription.current.lastError
                for (name, member) in file.clusters {
                    if let accepted = member.accepted { out.append((name, accepted, refusal)) }
                }
            }
            return out.sorted { $0.cluster < $1.cluster }
        }
    }
}
