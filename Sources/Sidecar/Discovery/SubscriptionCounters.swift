import Atomics
import SidecarCore

/// Envoy's subscription stats (`update_attempt`, `update_success`, `update_rejected`, `update_failure`,
/// `update_time`, with `update_empty` and `config_reload` where the subscription counts them) under one or more
/// scopes: `cluster_manager.cds`, `http.<prefix>.rds.<name>`, `cluster.<name>` for EDS.
final class SubscriptionCounters: Sendable {
    let attempt = ManagedAtomic(0), success = ManagedAtomic(0), rejected = ManagedAtomic(0)
    let failure = ManagedAtomic(0), empty = ManagedAtomic(0), reload = ManagedAtomic(0)
    let updateTime = ManagedAtomic(0)

    /// `empty`: counts `update_empty` (RDS, EDS); `reload`: counts `config_reload` too (CDS, RDS). Registered as one
    /// group read by one function (an EDS cluster has a set; a thousand clusters, a thousand sets).
    func register(scope: String, in registry: StatsRegistry, empty: Bool, reload: Bool) {
        let layout = Self.layouts[(empty ? 1 : 0) + (reload ? 2 : 0)]
        let first = registry.register(layout.slots, prefix: "\(scope).")
        let values: [ManagedAtomic<Int>?] = layout.fields.map { field -> ManagedAtomic<Int>? in
            switch field {
            case .none: return nil
            case .attempt: return attempt
            case .failure: return failure
            case .rejected: return rejected
            case .success: return success
            case .time: return updateTime
            case .empty: return self.empty
            case .reload: return self.reload
            }
        }
        registry.setComputed(first: first, count: values.count) { k in values[k]?.load(ordering: .relaxed) ?? 0 }
    }

    private enum Field: Sendable { case none, attempt, failure, rejected, success, time, empty, reload }

    private struct Layout: Sendable {
        var slots: SlotLayout
        var fields: [Field]
    }

    /// The four sets of stats (without and with `update_empty`, without and with `config_reload`), shared.
    private static let layouts: [Layout] = (0..<4).map { variant in
        var stats: [(String, StatsRegistry.Kind, Field)] = [
            ("init_fetch_timeout", .counter, .none), ("update_attempt", .counter, .attempt),
            ("update_failure", .counter, .failure), ("update_rejected", .counter, .rejected),
            ("update_success", .counter, .success), ("update_time", .gauge, .time),
        ]
        if variant & 1 != 0 { stats.append(("update_empty", .counter, .empty)) }
        if variant & 2 != 0 { stats += [("config_reload", .counter, .reload), ("config_reload_time_ms", .gauge, .time)] }
        // Each stat's Prometheus family is its full name, as for the other scopes' stats.
        return Layout(slots: SlotLayout(stats: stats.map { ($0.0, $0.1) }, familyPrefix: nil), fields: stats.map(\.2))
    }
}
