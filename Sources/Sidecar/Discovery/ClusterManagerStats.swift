import Atomics
import SidecarCore

/// Envoy's `cluster_manager.*`: clusters added, modified and removed by config (the bootstrap's count as added
/// at start), and how many are active. Nothing warms here (a file's clusters have their endpoints inline), so
/// `warming_clusters` stays 0.
final class ClusterManagerStats: Sendable {
    private let added = ManagedAtomic(0), modified = ManagedAtomic(0), removed = ManagedAtomic(0)
    private let active = ManagedAtomic(0)

    init(registry: StatsRegistry) {
        let (added, modified, removed, active) = (self.added, self.modified, self.removed, self.active)
        registry.registerComputed("cluster_manager.active_clusters") { active.load(ordering: .relaxed) }
        registry.registerComputed("cluster_manager.cluster_added", kind: .counter) { added.load(ordering: .relaxed) }
        registry.registerComputed("cluster_manager.cluster_modified", kind: .counter) {
            modified.load(ordering: .relaxed)
        }
        registry.registerComputed("cluster_manager.cluster_removed", kind: .counter) {
            removed.load(ordering: .relaxed)
        }
        registry.registerComputed("cluster_manager.warming_clusters") { 0 }
    }

    /// Counts the change from `before` to `after` (nil before: the start).
    func count(from before: [Cluster], to after: [Cluster]) {
        var old: [String: Cluster] = [:]
        for c in before { old[c.name] = c }
        let names = Set(after.map(\.name))
        for c in after {
            if let o = old[c.name] {
                if o != c { modified.wrappingIncrement(ordering: .relaxed) }
            } else {
                added.wrappingIncrement(ordering: .relaxed)
            }
        }
        removed.wrappingIncrement(by: old.keys.filter { !names.contains($0) }.count, ordering: .relaxed)
        active.store(after.count, ordering: .relaxed)
    }
}
