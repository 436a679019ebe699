import SidecarCore

/// One RBAC filter of a filter chain at run time: its engines (rules or matcher) and its counters.
struct RBACFilter: Sendable {
    let engine: RBACEngine?
    let shadowEngine: RBACEngine?
    let stats: RBACStats
    /// Some principal or matcher input reads the XFF-derived remote address (the HTTP filter parses the
    /// header only then).
    let usesRemoteIP: Bool
    /// The `<stat_prefix>.ip_parsing_failed` counter of each `Ip` matcher's stat prefix.
    let ipParsingFailed: [String: Int]

    /// `registry`: where the `Ip` matchers' counters were registered at start-up (`registerStats`); it is
    /// only read here, so that a per-route config may build its filter while requests run.
    init(_ config: RBACFilterConfig, stats: RBACStats, registry: StatsRegistry? = nil) {
        engine = config.engine
        shadowEngine = config.shadowEngine
        self.stats = stats
        usesRemoteIP = (engine?.usesRemoteIP ?? false) || (shadowEngine?.usesRemoteIP ?? false)
        var slots: [String: Int] = [:]
        if let registry {
            for prefix in config.ipStatPrefixes {
                if let slot = registry.slot(named: RBACFilterConfig.ipParsingFailedName(prefix)) { slots[prefix] = slot }
            }
        }
        ipParsingFailed = slots
    }

    /// Envoy's order (both filters): the shadow engine is evaluated and counted first, then the enforced
    /// one. Without an enforced engine the request is allowed and `allowed` is not counted, as in Envoy.
    func allows(_ request: RBACRequest, counting counters: WorkerStats) -> Bool {
        let failed = { (prefix: String) in
            if let slot = ipParsingFailed[prefix] { counters.inc(slot) }
        }
        if let shadowEngine {
            counters.inc(shadowEngine.allows(request, ipParsingFailed: failed) ? stats.shadowAllowed : stats.shadowDenied)
        }
        guard let engine else { return true }
        let allowed = engine.allows(request, ipParsingFailed: failed)
        counters.inc(allowed ? stats.allowed : stats.denied)
        return allowed
    }

    /// Runs a chain's RBAC filters in order. The first denial ends the chain, as a filter that stops
    /// iteration does in Envoy: later filters neither decide nor count.
    static func allow(_ filters: [RBACFilter], _ request: RBACRequest, counting counters: WorkerStats) -> Bool {
        for filter in filters where !filter.allows(request, counting: counters) { return false }
        return true
    }
}
