import Atomics
import SidecarCore

/// Envoy's subscription stats (`update_attempt`, `update_success`, `update_rejected`, `update_failure`,
/// `update_time`, with `update_empty` and `config_reload` where the subscription counts them) under one or more
/// scopes: `cluster_manager.cds`, `http.<prefix>.rds.<name>`, `cluster.<name>` for EDS.
final class SubscriptionCounters: Sendable {
    let attempt = ManagedAtomic(0), success = ManagedAtomic(0), rejected = ManagedAtomic(0)
    let failure = ManagedAtomic(0), empty = ManagedAtomic(0), reload = ManagedAtomic(0)
    let updateTime = ManagedAtomic(0)

    /// `empty`: counts `update_empty` (RDS, EDS); `reload`: counts `config_reload` too (CDS, RDS).
    func register(scope: String, in registry: StatsRegistry, empty: Bool, reload: Bool) {
        var stats: [(String, StatsRegistry.Kind, ManagedAtomic<Int>?)] = [
            ("init_fetch_timeout", .counter, nil), ("update_attempt", .counter, attempt),
            ("update_failure", .counter, failure), ("update_rejected", .counter, rejected),
            ("update_success", .counter, success), ("update_time", .gauge, updateTime),
        ]
        if empty { stats.append(("update_empty", .counter, self.empty)) }
        if reload { stats += [("config_reload", .counter, self.reload), ("config_reload_time_ms", .gauge, updateTime)] }
        for (name, kind, value) in stats {
            registry.registerComputed("\(scope).\(name)", kind: kind) { value?.load(ordering: .relaxed) ?? 0 }
        }
    }
}
