import Atomics

/// Envoy's `listener_manager` counters: listeners added (static or LDS), modified and removed by LDS, and listener
/// objects made on workers (one per worker and generation).
final class ListenerCounters: Sendable {
    let added = ManagedAtomic(0)
    let modified = ManagedAtomic(0)
    let removed = ManagedAtomic(0)
    let created = ManagedAtomic(0)
}
