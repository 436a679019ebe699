/// One `envoy.filters.network.rbac` or `envoy.filters.http.rbac` filter as configured.
public struct RBACFilterConfig: Sendable {
    /// nil: nothing is enforced and nothing counted (Envoy: "no engine, allowed by default"). Present and
    /// without policies: ALLOW denies everything, DENY allows everything. Ignored when `matcher` is set.
    public var rules: RBACRules?
    /// Evaluated and counted (`shadow_allowed`, `shadow_denied`) but never enforced. Ignored when
    /// `shadowMatcher` is set.
    public var shadowRules: RBACRules?
    /// The matcher form (`matcher`): the action it ends in decides; no action denies.
    public var matcher: RBACMatcher?
    public var shadowMatcher: RBACMatcher?
    /// The network filter's required `stat_prefix`; "" for the HTTP filter, which counts under its
    /// connection manager's prefix.
    public var statPrefix: String = ""
    /// HTTP filter only.
    public var rulesStatPrefix: String = ""
    public var shadowRulesStatPrefix: String = ""

    /// What is enforced: the matcher, else the rules (Envoy's `createEngine`).
    package var engine: RBACEngine? { RBACEngine(rules: rules, matcher: matcher) }
    package var shadowEngine: RBACEngine? { RBACEngine(rules: shadowRules, matcher: shadowMatcher) }

    /// Where this filter's counters live; `connectionManagerPrefix` is the HCM's for the HTTP filter, nil
    /// for the network filter.
    package func statsScope(connectionManagerPrefix: String?) -> RBACStats.Scope {
        guard let hcm = connectionManagerPrefix else {
            return .network(statPrefix: statPrefix, shadowRulesStatPrefix: shadowRulesStatPrefix)
        }
        return .http(connectionManagerPrefix: hcm, rulesStatPrefix: rulesStatPrefix,
                     shadowRulesStatPrefix: shadowRulesStatPrefix)
    }

    /// The stat prefixes of the `Ip` matchers of the engines in use.
    package var ipStatPrefixes: [String] { (engine?.ipStatPrefixes ?? []) + (shadowEngine?.ipStatPrefixes ?? []) }

    /// Envoy's `Ip` input matcher counter, at the root of the stats tree (checked on Envoy 1.40).
    package static func ipParsingFailedName(_ statPrefix: String) -> String { "\(statPrefix).ip_parsing_failed" }

    /// Registers the `Ip` matchers' counters (Envoy creates them with the config); matchers that share a stat
    /// prefix share the counter.
    package func registerStats(_ registry: StatsRegistry) {
        for prefix in ipStatPrefixes { registry.registerOnce(Self.ipParsingFailedName(prefix), .counter) }
    }
}
