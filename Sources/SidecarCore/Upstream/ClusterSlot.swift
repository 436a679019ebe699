/// Where a cluster sits in one config snapshot. Route targets are resolved to it once, when the snapshot is built,
/// and each worker keeps its thread-local cluster at the same place for that snapshot, so a request reaches its
/// cluster with an array read instead of a lookup by name. Meaningful only with the snapshot that made it.
package struct ClusterSlot: Sendable, Hashable {
    package let index: Int

    package init(index: Int) {
        self.index = index
    }
}
