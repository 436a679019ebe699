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
    /// The clusters whose assignment comes on the ADS stream, by name. Guarded by `lock`.
    private var ads: [String: Member] = [:]
    /// The assignments the ADS stream gave last, by name (a response carries only those that changed; a cluster
    /// that joins later, or is replaced by CDS, starts with its service's). Guarded by `lock`.
    private var adsAssignments: [String: (assignment: ClusterLoadAssignment, accepted: Accepted)] = [:]
    /// Called (without the lock) when the service names wanted from the ADS stream changed.
    private var adsNamesChanged: (@Sendable () -> Void)?

    private struct File {
        var subscription: DiscoverySubscription<ClusterLoadAssignment>
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
        var refusal: DiscoverySubscription<ClusterLoadAssignment>.Refusal?
        /// Envoy's subscription stats in the cluster's scope.
        let counters: SubscriptionCounters
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
        let namesChanged = try lock.withLock { () -> Bool in
            var wanted: [String: EDSClusterConfig] = [:]
            for c in clusters { if let eds = c.eds { wanted[c.name] = eds } }
            // New subscriptions first: when one cannot be made (its directory cannot be watched), the update is
            // refused and nothing of the running config has been taken away.
            for (name, config) in wanted.sorted(by: { $0.key < $1.key }) {
                guard let source = config.source.file else { continue }
                if let m = files[source]?.clusters[name], m.serviceName == config.serviceName { continue }
                if files[source] == nil {
                    let subscription = DiscoverySubscription<ClusterLoadAssignment>(
                        source: config.source, what: "EDS", scopes: [], registry: registry, reloadCounted: false
                    ) { try DiscoveryResources.endpoints(path: $0) }
                    let watcher = started ? try watch(source, subscription) : nil
                    subscription.update { _ in }
                    files[source] = File(subscription: subscription, watcher: watcher)
                }
                var member = Member(serviceName: config.serviceName, counters: counters(name))
                _ = Self.take(files[source]!.subscription.current, into: &member)
                files[source]!.clusters[name] = member
            }
            for source in Array(files.keys) {
                for name in Array(files[source]!.clusters.keys) where wanted[name]?.source.file != source {
                    files[source]!.clusters[name] = nil
                }
                if files[source]!.clusters.isEmpty {
                    files[source]!.watcher?.stop()
                    files[source] = nil
                }
            }
            let namesBefore = Set(ads.values.map(\.serviceName))
            for (name, config) in wanted where config.source == .ads {
                if let m = ads[name], m.serviceName == config.serviceName { continue }
                var member = Member(serviceName: config.serviceName, counters: counters(name))
                if let cached = adsAssignments[config.serviceName] {
                    member.endpoints = cached.assignment.endpoints
                    member.accepted = cached.accepted
                }
                ads[name] = member
            }
            for name in Array(ads.keys) where wanted[name]?.source != .ads { ads[name] = nil }
            let names = Set(ads.values.map(\.serviceName))
            for name in Array(adsAssignments.keys) where !names.contains(name) { adsAssignments[name] = nil }
            return names != namesBefore
        }
        if namesChanged { lock.withLock { adsNamesChanged }?() }
    }

    /// A cluster's hosts from its endpoints (IP addresses only), without the growth slack of `compactMap`: kept on
    /// every worker for the cluster's life.
    static func hosts(_ endpoints: [Cluster.Endpoint]) -> [UpstreamHost] {
        var out: [UpstreamHost] = []
        out.reserveCapacity(endpoints.count)
        for e in endpoints { if let h = ClusterManager.ipHost(e) { out.append(h) } }
        return out
    }

    private func counters(_ cluster: String) -> SubscriptionCounters {
        registry.owned(by: ClusterInfo.statsOwner(cluster)) {
            let c = SubscriptionCounters()
            c.register(scope: "cluster.\(cluster)", in: registry, empty: true, reload: false)
            return c
        }
    }

    /// The service names the ADS stream is to deliver, and who to tell when they change.
    var adsServiceNames: Set<String> { lock.withLock { Set(ads.values.map(\.serviceName)) } }

    func onADSNamesChanged(_ changed: @escaping @Sendable () -> Void) {
        lock.withLock { adsNamesChanged = changed }
    }

    /// An EDS response from the ADS stream (decoded, or why not): each assignment in it replaces the hosts of the
    /// clusters of its service (a response carries only the assignments that changed; the others stay). A
    /// refused response is counted against every ADS cluster and changes nothing. Returns why it was refused.
    func applyADS(_ decoded: Result<DiscoveryFile<ClusterLoadAssignment>, Error>) -> String? {
        let now = Date()
        var changed: [(String, [UpstreamHost])] = []
        let (push, error) = lock.withLock { () -> ((@Sendable (String, [UpstreamHost]) -> Void)?, String?) in
            let file: DiscoveryFile<ClusterLoadAssignment>
            switch decoded {
            case .failure(let error):
                for name in ads.keys {
                    ads[name]!.counters.attempt.wrappingIncrement(ordering: .relaxed)
                    ads[name]!.counters.rejected.wrappingIncrement(ordering: .relaxed)
                    ads[name]!.refusal = .init(message: "\(error)", at: now, versionInfo: nil)
                }
                return (nil, "\(error)")
            case .success(let f):
                file = f
            }
            for (i, la) in file.resources.enumerated() {
                adsAssignments[la.clusterName] = (la, Accepted(document: file.documents[i], versionInfo: file.versionInfo, at: now))
            }
            let inResponse = Set(file.resources.map(\.clusterName))
            for name in ads.keys {
                guard inResponse.contains(ads[name]!.serviceName),
                      let cached = adsAssignments[ads[name]!.serviceName] else { continue }
                let c = ads[name]!.counters
                c.attempt.wrappingIncrement(ordering: .relaxed)
                c.success.wrappingIncrement(ordering: .relaxed)
                c.updateTime.store(Int(now.timeIntervalSince1970 * 1000), ordering: .relaxed)
                ads[name]!.refusal = nil
                ads[name]!.accepted = cached.accepted
                guard cached.assignment.endpoints != ads[name]!.endpoints else { continue }
                ads[name]!.endpoints = cached.assignment.endpoints
                changed.append((name, Self.hosts(cached.assignment.endpoints)))
            }
            return (self.push, nil)
        }
        for (name, hosts) in changed { push?(name, hosts) }
        return error
    }

    /// Counts the file's last attempt for `member` and, when it is accepted for it, takes its assignment; returns
    /// the assignment when its endpoints changed.
    private static func take(_ state: DiscoverySubscription<ClusterLoadAssignment>.State, into member: inout Member)
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
            ads = [:]
            adsNamesChanged = nil
        }
    }

    private func watch(_ source: FileConfigSource, _ subscription: DiscoverySubscription<ClusterLoadAssignment>) throws
        -> FileMoveWatcher
    {
        let watcher = try subscription.watch { [weak self] in self?.reload(source) }!
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
                    changed.append((name, Self.hosts(la.endpoints)))
                }
            }
            return self.push
        }
        for (name, hosts) in changed { push?(name, hosts) }
    }

    /// The hosts of an EDS cluster as its file gave them last (none before a file had its assignment); a later
    /// file without its assignment leaves them.
    func hosts(for cluster: Cluster) -> [UpstreamHost] {
        let endpoints = lock.withLock { () -> [Cluster.Endpoint]? in
            guard let eds = cluster.eds else { return nil }
            guard let file = eds.source.file else { return ads[cluster.name]?.endpoints }
            return files[file]?.clusters[cluster.name]?.endpoints
        }
        return endpoints.map(Self.hosts) ?? []
    }

    /// Each EDS cluster's assignment as accepted last, and the last refusal of its file, for /config_dump.
    var assignments: [(cluster: String, accepted: Accepted, refusal: DiscoverySubscription<ClusterLoadAssignment>.Refusal?)] {
        lock.withLock {
            var out: [(cluster: String, accepted: Accepted, refusal: DiscoverySubscription<ClusterLoadAssignment>.Refusal?)] = []
            for file in files.values {
                for (name, member) in file.clusters {
                    if let accepted = member.accepted { out.append((name, accepted, member.refusal)) }
                }
            }
            for (name, member) in ads {
                if let accepted = member.accepted { out.append((name, accepted, member.refusal)) }
            }
            return out.sorted { $0.cluster < $1.cluster }
        }
    }
}
