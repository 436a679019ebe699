import Atomics
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import SidecarCore
import SidecarUpstream

/// The endpoints of EDS clusters, from their `eds_cluster_config` files. As in Envoy, a cluster's file must hold
/// exactly one `ClusterLoadAssignment`, named by the cluster's `service_name`; anything else is rejected for that
/// cluster, which keeps its hosts. A file is read once per change however many clusters name it, and its
/// subscription starts when a config snapshot first has one of them (the file read then, so the cluster starts
/// with its endpoints) and stops when no snapshot has any. Each accepted file replaces, on every worker and in the
/// health checker, the hosts of a cluster whose assignment changed (`push`), keeping its pools and what is known of
/// the hosts that stay, as a DNS refresh does. Counted per cluster as Envoy counts EDS: `cluster.<name>.update_*`
/// (a file with no assignment counts `update_empty` and changes nothing).
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
        /// Why the last file was refused for this cluster (cleared by the next accepted one).
        var refusal: FileSubscription<ClusterLoadAssignment>.Refusal?
        let counters: Counters
    }

    /// A cluster's EDS counters (Envoy's subscription stats in the cluster's scope).
    private final class Counters: Sendable {
        let attempt = ManagedAtomic(0), success = ManagedAtomic(0), rejected = ManagedAtomic(0)
        let failure = ManagedAtomic(0), empty = ManagedAtomic(0), updateTime = ManagedAtomic(0)

        init(cluster: String, registry: StatsRegistry) {
            let stats: [(String, StatsRegistry.Kind, ManagedAtomic<Int>?)] = [
                ("init_fetch_timeout", .counter, nil), ("update_attempt", .counter, attempt),
                ("update_empty", .counter, empty), ("update_failure", .counter, failure),
                ("update_rejected", .counter, rejected), ("update_success", .counter, success),
                ("update_time", .gauge, updateTime),
            ]
            for (name, kind, value) in stats {
                registry.registerComputed("cluster.\(cluster).\(name)", kind: kind) { value?.load(ordering: .relaxed) ?? 0 }
            }
        }
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
            // New subscriptions first: when one cannot be made (its directory cannot be watched), the update is
            // refused and nothing of the running config has been taken away.
            for (name, config) in wanted.sorted(by: { $0.key < $1.key }) {
                if let m = files[config.source]?.clusters[name], m.serviceName == config.serviceName { continue }
                if files[config.source] == nil {
                    let subscription = FileSubscription<ClusterLoadAssignment>(
                        source: config.source, what: "EDS", scopes: [], registry: registry, reloadCounted: false
                    ) { try DiscoveryResources.endpoints(path: $0) }
                    let watcher = started ? try watch(config.source, subscription) : nil
                    subscription.update { _ in }
                    files[config.source] = File(subscription: subscription, watcher: watcher)
                }
                let counters = registry.owned(by: ClusterInfo.statsOwner(name)) {
                    Counters(cluster: name, registry: registry)
                }
                var member = Member(serviceName: config.serviceName, counters: counters)
                _ = Self.take(files[config.source]!.subscription.current, into: &member)
                files[config.source]!.clusters[name] = member
            }
            for source in Array(files.keys) {
                for name in Array(files[source]!.clusters.keys) where wanted[name]?.source != source {
                    files[source]!.clusters[name] = nil
                }
                if files[source]!.clusters.isEmpty {
                    files[source]!.watcher?.stop()
                    files[source] = nil
                }
            }
        }
    }

    /// Counts the file's last attempt for `member` and, when it is accepted for it, takes its assignment; returns
    /// the assignment when its endpoints changed.
    private static func take(_ state: FileSubscription<ClusterLoadAssignment>.State, into member: inout Member)
        -> ClusterLoadAssignment?
    {
        let c = member.counters
        c.attempt.wrappingIncrement(ordering: .relaxed)
        switch state.lastAttempt {
        case .none:
            return nil
        case .failed:
            c.failure.wrappingIncrement(ordering: .relaxed)
            member.refusal = state.lastError
            return nil
        case .rejected:
            c.rejected.wrappingIncrement(ordering: .relaxed)
            member.refusal = state.lastError
            return nil
        case .accepted:
            break
        }
        let at = state.lastUpdated ?? Date()
        func reject(_ message: String) -> ClusterLoadAssignment? {
            c.rejected.wrappingIncrement(ordering: .relaxed)
            member.refusal = .init(message: message, at: at, versionInfo: state.versionInfo)
            return nil
        }
        if state.resources.isEmpty {
            c.empty.wrappingIncrement(ordering: .relaxed)
        } else if state.resources.count > 1 {
            return reject("Unexpected EDS resource length: \(state.resources.count)")
        } else if state.resources[0].clusterName != member.serviceName {
            return reject("Unexpected EDS cluster (expecting \(member.serviceName)): \(state.resources[0].clusterName)")
        }
        c.success.wrappingIncrement(ordering: .relaxed)
        c.updateTime.store(Int(at.timeIntervalSince1970 * 1000), ordering: .relaxed)
        member.refusal = nil
        guard let la = state.resources.first else { return nil }
        member.accepted = Accepted(document: state.documents[0], versionInfo: state.versionInfo, at: at)
        guard la.endpoints != member.endpoints else { return nil }
        member.endpoints = la.endpoints
        return la
    }

    /// Watches every file from now on; `push` gets the hosts of each cluster an accepted file changes.
    func start(push: @escaping @Sendable (String, [UpstreamHost]) -> Void) throws {
        try lock.withLock {
            started = true
            self.push = push
            for (source, file) in files where file.watcher == nil {
                files[source]!.watcher = try watch(source, file.subscription)
            }
        }
    }

    func stop() {
        lock.withLock {
            for file in files.values { file.watcher?.stop() }
            files = [:]
        }
    }

    private func watch(_ source: FileConfigSource, _ subscription: FileSubscription<ClusterLoadAssignment>) throws
        -> FileMoveWatcher
    {
        let watcher = try subscription.watch { [weak self] in self?.reload(source) }
        watcher.start()
        return watcher
    }

    /// The file at `source` was replaced: read it once, and push each of its clusters' changed hosts.
    private func reload(_ source: FileConfigSource) {
        let subscription = lock.withLock { files[source]?.subscription }
        guard let subscription else { return }
        subscription.update { _ in }
        let state = subscription.current
        var changed: [(String, [UpstreamHost])] = []
        let push = lock.withLock { () -> (@Sendable (String, [UpstreamHost]) -> Void)? in
            guard let names = files[source]?.clusters.keys else { return nil }
            for name in names {
                if let la = Self.take(state, into: &files[source]!.clusters[name]!) {
                    changed.append((name, la.endpoints.compactMap(ClusterManager.ipHost)))
                }
            }
            return self.push
        }
        for (name, hosts) in changed { push?(name, hosts) }
    }

    /// The hosts of an EDS cluster as its file gave them last (none before a file had its assignment); a later
    /// file without its assignment leaves them.
    func hosts(for cluster: Cluster) -> [UpstreamHost] {
        let endpoints = lock.withLock { cluster.eds.flatMap { files[$0.source]?.clusters[cluster.name]?.endpoints } }
        return endpoints?.compactMap(ClusterManager.ipHost) ?? []
    }

    /// Each EDS cluster's assignment as accepted last, and the last refusal of its file, for /config_dump.
    var assignments: [(cluster: String, accepted: Accepted, refusal: FileSubscription<ClusterLoadAssignment>.Refusal?)] {
        lock.withLock {
            var out: [(cluster: String, accepted: Accepted, refusal: FileSubscription<ClusterLoadAssignment>.Refusal?)] = []
            for file in files.values {
                for (name, member) in file.clusters {
                    if let accepted = member.accepted { out.append((name, accepted, member.refusal)) }
                }
            }
            return out.sorted { $0.cluster < $1.cluster }
        }
    }
}
