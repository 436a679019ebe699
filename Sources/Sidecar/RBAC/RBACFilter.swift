/// One RBAC filter of a filter chain at run time: its rules and its counters.
struct RBACFilter: Sendable {
    let rules: RBACRules?
    let shadowRules: RBACRules?
    let stats: RBACStats
    /// Some principal reads the XFF-derived remote address (the HTTP filter parses the header only then).
    let usesRemoteIP: Bool

    init(_ config: RBACFilterConfig, stats: RBACStats) {
        rules = config.rules
        shadowRules = config.shadowRules
        self.stats = stats
        usesRemoteIP = (config.rules?.usesRemoteIP ?? false) || (config.shadowRules?.usesRemoteIP ?? false)
    }

    /// Envoy's order (both filters): the shadow rules are evaluated and counted first, then the enforced
    /// ones. Without enforced rules the request is allowed and `allowed` is not counted, as in Envoy.
    func allows(_ request: RBACRequest, counting counters: WorkerStats) -> Bool {
        if let shadowRules {
            counters.inc(shadowRules.allows(request) ? stats.shadowAllowed : stats.shadowDenied)
        }
        guard let rules else { return true }
        let allowed = rules.allows(request)
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
