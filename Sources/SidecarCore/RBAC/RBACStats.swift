/// The counters of one RBAC filter, with Envoy 1.40's names (`generateStats` in
/// source/extensions/filters/common/rbac/utility.cc, checked on `/stats`):
///
/// - network filter: `<stat_prefix>.rbac.{allowed,denied}` and
///   `<stat_prefix>.rbac.<shadow_rules_stat_prefix>.{shadow_allowed,shadow_denied}`;
/// - HTTP filter: `http.<hcm stat_prefix>.rbac.<rules_stat_prefix>.{allowed,denied}` and
///   `http.<hcm stat_prefix>.rbac.<shadow_rules_stat_prefix>.{shadow_allowed,shadow_denied}`.
///
/// Prefixes are joined as Envoy's `statPrefixJoin` does (a "." is added unless the prefix ends in one; an
/// empty prefix adds nothing). All four exist from start-up, shadow ones included, as in Envoy. Filters whose
/// names coincide share the counters, as in Envoy's stats store.
public struct RBACStats: Sendable {
    public let allowed, denied, shadowAllowed, shadowDenied: Int

    /// Which filter the counters belong to; equal scopes share one set of counters.
    package enum Scope: Hashable {
        case network(statPrefix: String, shadowRulesStatPrefix: String)
        case http(connectionManagerPrefix: String, rulesStatPrefix: String, shadowRulesStatPrefix: String)
    }

    package init(_ scope: Scope, registry r: StatsRegistry) {
        switch scope {
        case .network(let statPrefix, let shadowPrefix):
            let base = Self.join(statPrefix, "rbac.")
            let enforced = Self.Group(name: base, prometheus: Self.networkPrometheus(statPrefix: statPrefix, rules: ""))
            let shadow = Self.Group(
                name: Self.join(base, shadowPrefix),
                prometheus: Self.networkPrometheus(statPrefix: statPrefix, rules: shadowPrefix))
            (allowed, denied) = (enforced.register("allowed", r), enforced.register("denied", r))
            (shadowAllowed, shadowDenied) = (shadow.register("shadow_allowed", r), shadow.register("shadow_denied", r))
        case .http(let hcm, let rulesPrefix, let shadowPrefix):
            let base = "http.\(hcm).rbac."
            let enforced = Self.Group(
                name: Self.join(base, rulesPrefix), prometheus: Self.httpPrometheus(hcm: hcm, rules: rulesPrefix))
            let shadow = Self.Group(
                name: Self.join(base, shadowPrefix), prometheus: Self.httpPrometheus(hcm: hcm, rules: shadowPrefix))
            (allowed, denied) = (enforced.register("allowed", r), enforced.register("denied", r))
            (shadowAllowed, shadowDenied) = (shadow.register("shadow_allowed", r), shadow.register("shadow_denied", r))
        }
    }

    /// Envoy's `statPrefixJoin`.
    package static func join(_ prefix: String, _ suffix: String) -> String {
        if prefix.isEmpty { return suffix }
        return prefix.hasSuffix(".") ? prefix + suffix : prefix + "." + suffix
    }

    /// A stat-name prefix and how its counters appear in the Prometheus form.
    private struct Group {
        var name: String
        /// The family before the counter's own name (ends in "."), and the labels Envoy's tag extractors take out.
        var prometheus: (family: String, labels: [(String, String)])

        func register(_ counter: String, _ r: StatsRegistry) -> Int {
            r.registerOnce(
                join(name, counter), .counter, family: prometheus.family + counter, labels: prometheus.labels)
        }
    }

    /// The dot-separated parts of a prefix, without the empty part a trailing "." leaves.
    private static func segments(_ prefix: String) -> [Substring] {
        prefix.split(separator: ".", omittingEmptySubsequences: false).filter { !$0.isEmpty }
    }

    /// Envoy's `RBAC_HTTP_PREFIX` extractor takes the first segment of the rules prefix as
    /// `envoy_rbac_http_prefix`; the rest stays in the name (`rules_stat_prefix: a.b` renders as
    /// `envoy_http_rbac_b_allowed{envoy_rbac_http_prefix="a",envoy_http_conn_manager_prefix="…"}` on 1.40).
    private static func httpPrometheus(hcm: String, rules: String) -> (String, [(String, String)]) {
        let hcmLabel = ("envoy_http_conn_manager_prefix", hcm)
        let parts = segments(rules)
        guard let first = parts.first else { return ("http.rbac.", [hcmLabel]) }
        let rest = parts.dropFirst().map { "\($0)." }.joined()
        return ("http.rbac." + rest, [("envoy_rbac_http_prefix", String(first)), hcmLabel])
    }

    /// Envoy's `RBAC_PREFIX` extractor takes a one-segment `stat_prefix` as `envoy_rbac_prefix`; with more
    /// segments nothing is extracted and the whole name is the family (`stat_prefix: a.b` renders as
    /// `envoy_a_b_rbac_allowed{}` on 1.40).
    private static func networkPrometheus(statPrefix: String, rules: String) -> (String, [(String, String)]) {
        let parts = segments(statPrefix)
        let ruleParts = segments(rules).map { "\($0)." }.joined()
        guard parts.count == 1 else { return (join(join(join(statPrefix, "rbac."), rules), ""), []) }
        return ("rbac." + ruleParts, [("envoy_rbac_prefix", String(parts[0]))])
    }
}
