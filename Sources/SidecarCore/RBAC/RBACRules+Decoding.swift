/// Decoding of `envoy.config.rbac.v3.RBAC` with the validation Envoy 1.40 applies (checked with
/// `envoy --mode validate`). Every field Pilotfish does not evaluate is an error naming it.
extension RBACRules {
    /// `forHTTP`: false for the network filter, which refuses header rules as Envoy does (`url_path` is
    /// accepted there, as in Envoy, and never matches).
    package static func decode(_ value: ConfigValue, forHTTP: Bool) throws -> RBACRules {
        let obj = try value.object()
        try obj.unsupported(["audit_logging_options"])
        var action = Action.ALLOW
        if let a = obj.optional("action") {
            let text = try a.string()
            if text == "LOG" {
                throw a.error(
                    "action LOG is a valid Envoy value but is not supported by Pilotfish yet; use ALLOW or DENY")
            }
            action = try a.enumValue(Action.self)
        }
        var policies: [RBACPolicy] = []
        for (name, policy) in try obj.optional("policies")?.map() ?? [] {
            policies.append(try RBACPolicy.decode(policy, name: name, forHTTP: forHTTP))
        }
        try obj.finish()
        return RBACRules(action: action, policies: policies)
    }
}

extension RBACPolicy {
    package static func decode(_ value: ConfigValue, name: String, forHTTP: Bool) throws -> RBACPolicy {
        let obj = try value.object()
        try obj.unsupported(["condition", "checked_condition", "cel_config"])
        let permissions = try obj.list("permissions").map { try RBACPermission.decode($0, forHTTP: forHTTP) }
        if permissions.isEmpty {
            throw (obj.optional("permissions") ?? value).error("a policy needs at least one permission (use any: true)")
        }
        let principals = try obj.list("principals").map { try RBACPrincipal.decode($0, forHTTP: forHTTP) }
        if principals.isEmpty {
            throw (obj.optional("principals") ?? value).error("a policy needs at least one principal (use any: true)")
        }
        try obj.finish()
        return RBACPolicy(name: name, permissions: permissions, principals: principals)
    }
}

extension RBACPermission {
    package static func decode(_ value: ConfigValue, forHTTP: Bool) throws -> RBACPermission {
        let obj = try value.object()
        try obj.unsupported(["metadata", "sourced_metadata", "matcher", "uri_template"])
        let keys = [
            "and_rules", "or_rules", "any", "header", "url_path", "destination_ip", "destination_port",
            "destination_port_range", "not_rule", "requested_server_name",
        ]
        guard let (key, v) = try obj.oneOf(keys) else { fatalError("unreachable: oneOf is required") }
        let permission: RBACPermission
        switch key {
        case "and_rules": permission = .and(try ruleSet(v, "rules") { try decode($0, forHTTP: forHTTP) })
        case "or_rules": permission = .or(try ruleSet(v, "rules") { try decode($0, forHTTP: forHTTP) })
        case "any": try requireTrue(v); permission = .any
        case "header": permission = .header(try decodeHeader(v, forHTTP: forHTTP))
        case "url_path": permission = .urlPath(try decodePathMatcher(v))
        case "destination_ip": permission = .destinationIP(try decodeCIDR(v))
        case "destination_port": permission = .destinationPort(Int(try v.int(min: 0, max: 65535)))
        case "destination_port_range": permission = .destinationPortRange(try decodePortRange(v))
        case "not_rule": permission = .not(try decode(v, forHTTP: forHTTP))
        default: permission = .requestedServerName(try StringMatcher.decode(v))
        }
        try obj.finish()
        return permission
    }

    /// `envoy.type.v3.Int32Range` with the bounds Envoy's `PortRangeMatcher` enforces.
    private static func decodePortRange(_ value: ConfigValue) throws -> Range<Int> {
        let obj = try value.object()
        let start = Int(try obj.optional("start")?.int(min: Int64(Int32.min), max: Int64(Int32.max)) ?? 0)
        let end = Int(try obj.optional("end")?.int(min: Int64(Int32.min), max: Int64(Int32.max)) ?? 0)
        try obj.finish()
        if start < 0 || start > 65536 { throw value.error("range start \(start) is out of bounds") }
        if end < 0 || end > 65536 { throw value.error("range end \(end) is out of bounds") }
        if start >= end { throw value.error("range start \(start) cannot be greater or equal than range end \(end)") }
        return start..<end
    }
}

extension RBACPrincipal {
    package static func decode(_ value: ConfigValue, forHTTP: Bool) throws -> RBACPrincipal {
        let obj = try value.object()
        try obj.unsupported(["metadata", "sourced_metadata", "filter_state", "custom"])
        let keys = [
            "and_ids", "or_ids", "any", "authenticated", "source_ip", "direct_remote_ip", "remote_ip", "header",
            "url_path", "not_id",
        ]
        guard let (key, v) = try obj.oneOf(keys) else { fatalError("unreachable: oneOf is required") }
        let principal: RBACPrincipal
        switch key {
        case "and_ids": principal = .and(try ruleSet(v, "ids") { try decode($0, forHTTP: forHTTP) })
        case "or_ids": principal = .or(try ruleSet(v, "ids") { try decode($0, forHTTP: forHTTP) })
        case "any": try requireTrue(v); principal = .any
        case "authenticated":
            let a = try v.object()
            let name = try a.optional("principal_name").map(StringMatcher.decode)
            try a.finish()
            principal = .authenticated(name)
        case "source_ip": principal = .sourceIP(try decodeCIDR(v))
        case "direct_remote_ip": principal = .directRemoteIP(try decodeCIDR(v))
        case "remote_ip": principal = .remoteIP(try decodeCIDR(v))
        case "header": principal = .header(try decodeHeader(v, forHTTP: forHTTP))
        case "url_path": principal = .urlPath(try decodePathMatcher(v))
        default: principal = .not(try decode(v, forHTTP: forHTTP))
        }
        try obj.finish()
        return principal
    }
}

/// `Permission.Set` / `Principal.Set`: `{rules: [...]}` or `{ids: [...]}`, at least one.
private func ruleSet<T>(_ value: ConfigValue, _ field: String, _ decode: (ConfigValue) throws -> T) throws -> [T] {
    let obj = try value.object()
    let items = try obj.list(field).map(decode)
    if items.isEmpty { throw (obj.optional(field) ?? value).error("'\(field)' needs at least one entry") }
    try obj.finish()
    return items
}

/// `any` is validated `const: true`: `any: false` is an error, not a rule that never matches.
private func requireTrue(_ value: ConfigValue) throws {
    guard try value.bool() else { throw value.error("any must be true (omit the rule instead)") }
}

private func decodeHeader(_ value: ConfigValue, forHTTP: Bool) throws -> HeaderMatcher {
    guard forHTTP else {
        // Envoy: "Found header(...) rule,not supported by RBAC network filter".
        throw value.error("header rules are not supported by the RBAC network filter (as in Envoy); "
            + "use envoy.filters.http.rbac in the http_connection_manager")
    }
    return try HeaderMatcher.decode(value)
}

/// `envoy.type.matcher.v3.PathMatcher`: `{path: StringMatcher}`.
private func decodePathMatcher(_ value: ConfigValue) throws -> StringMatcher {
    let obj = try value.object()
    let matcher = try StringMatcher.decode(try obj.required("path"))
    try obj.finish()
    return matcher
}

/// `envoy.config.core.v3.CidrRange` as RBAC reads it: a missing `prefix_len` is 0 (the whole family, checked on
/// Envoy 1.40), and one beyond the family's width is clamped to it.
package func decodeCIDR(_ value: ConfigValue) throws -> IPRange {
    let obj = try value.object()
    let text = try obj.required("address_prefix").nonEmptyString()
    let length = try obj.optional("prefix_len")?.uint32Int() ?? 0
    try obj.finish()
    guard let address = IPAddress(parsing: text) else {
        throw value.error("Failed to create CIDR range: malformed IP address: \(text)")
    }
    return IPRange(address, prefixLength: length)
}
