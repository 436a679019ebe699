extension RBACFilterConfig {
    package static let networkType = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
    package static let httpType = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"

    /// `envoy.extensions.filters.network.rbac.v3.RBAC` (Envoy 1.40 has no `rules_stat_prefix`,
    /// `track_per_rule_stats` or `enforce_on_transport_ready` here: they are unknown fields).
    package static func decodeNetwork(_ obj: ConfigObject) throws -> RBACFilterConfig {
        try obj.unsupported(["delay_deny"])
        var config = RBACFilterConfig()
        config.statPrefix = try obj.required("stat_prefix").nonEmptyString()
        if let e = obj.optional("enforcement_type") {
            switch try e.string() {
            case "ONE_TIME_ON_FIRST_BYTE":
                break
            case "CONTINUOUS":
                throw e.error("enforcement_type CONTINUOUS is a valid Envoy value but is not supported by Pilotfish "
                    + "yet; it only differs with filters that emit dynamic metadata")
            case let other:
                throw e.error("unknown value '\(other)'; expected one of: ONE_TIME_ON_FIRST_BYTE, CONTINUOUS")
            }
        }
        try decodeRules(obj, into: &config, forHTTP: false)
        try obj.finish()
        return config
    }

    /// `envoy.extensions.filters.http.rbac.v3.RBAC`.
    package static func decodeHTTP(_ obj: ConfigObject) throws -> RBACFilterConfig {
        if let t = obj.optional("track_per_rule_stats"), try t.bool() {
            throw t.error("track_per_rule_stats: true is a valid Envoy value but is not supported by Pilotfish yet")
        }
        var config = RBACFilterConfig()
        config.rulesStatPrefix = try obj.optional("rules_stat_prefix")?.string() ?? ""
        try decodeRules(obj, into: &config, forHTTP: true)
        try obj.finish()
        return config
    }

    /// `rules` and `matcher` (and their shadows). Both may be given: Envoy validates both and enforces the
    /// matcher, ignoring the rules with a warning.
    private static func decodeRules(_ obj: ConfigObject, into config: inout RBACFilterConfig, forHTTP: Bool) throws {
        config.rules = try obj.optional("rules").map { try RBACRules.decode($0, forHTTP: forHTTP) }
        config.shadowRules = try obj.optional("shadow_rules").map { try RBACRules.decode($0, forHTTP: forHTTP) }
        config.matcher = try obj.optional("matcher").map { try RBACMatcher.decode($0, forHTTP: forHTTP) }
        config.shadowMatcher = try obj.optional("shadow_matcher").map { try RBACMatcher.decode($0, forHTTP: forHTTP) }
        config.shadowRulesStatPrefix = try obj.optional("shadow_rules_stat_prefix")?.string() ?? ""
    }
}
