/// One `envoy.filters.network.rbac` or `envoy.filters.http.rbac` filter as configured.
public struct RBACFilterConfig: Sendable {
    /// nil: nothing is enforced and nothing counted (Envoy: "no engine, allowed by default"). Present and
    /// without policies: ALLOW denies everything, DENY allows everything.
    public var rules: RBACRules?
    /// Evaluated and counted (`shadow_allowed`, `shadow_denied`) but never enforced.
    public var shadowRules: RBACRules?
    /// The network filter's required `stat_prefix`; "" for the HTTP filter, which counts under its
    /// connection manager's prefix.
    public var statPrefix: String = ""
    /// HTTP filter only.
    public var rulesStatPrefix: String = ""
    public var shadowRulesStatPrefix: String = ""

    /// Where this filter's counters live; `connectionManagerPrefix` is the HCM's for the HTTP filter, nil
    /// for the network filter.
    func statsScope(connectionManagerPrefix: String?) -> RBACStats.Scope {
        guard let hcm = connectionManagerPrefix else {
            return .network(statPrefix: statPrefix, shadowRulesStatPrefix: shadowRulesStatPrefix)
        }
        return .http(connectionManagerPrefix: hcm, rulesStatPrefix: rulesStatPrefix,
                     shadowRulesStatPrefix: shadowRulesStatPrefix)
    }
}
