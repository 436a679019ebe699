import SidecarCore
import SidecarUpstream

/// One worker's side of a `ConfigSnapshot`: its thread-local cluster for each of the snapshot's clusters, at the
/// same slots. A stream holds it from its first byte to its last, so whatever it reaches through it (routes,
/// hosts, pools) stays valid for the stream even after a newer snapshot is installed.
final class WorkerSnapshot {
    let config: ConfigSnapshot
    /// Indexed by `ClusterSlot`, as `config.clusters`.
    let clusters: [ThreadLocalCluster]

    init(config: ConfigSnapshot, clusters: [ThreadLocalCluster]) {
        precondition(config.clusters.count == clusters.count)
        self.config = config
        self.clusters = clusters
    }

    subscript(slot: ClusterSlot) -> ThreadLocalCluster { clusters[slot.index] }

    /// A cluster by name (the health-check filter's `cluster_min_healthy_percentages`).
    func cluster(named name: String) -> ThreadLocalCluster? {
        config.slot(named: name).map { clusters[$0.index] }
    }
}

@available(*, unavailable) extension WorkerSnapshot: Sendable {}
