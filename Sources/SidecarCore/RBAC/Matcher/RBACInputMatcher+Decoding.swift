extension RBACInputMatcher {
    package static let ipType = "envoy.extensions.matching.input_matchers.ip.v3.Ip"

    /// `single_predicate.value_match`: an `xds.type.matcher.v3.StringMatcher`. It is Envoy's StringMatcher
    /// except that `safe_regex` is an `xds.type.matcher.v3.RegexMatcher`, whose `google_re2` is required.
    package static func decodeValueMatch(_ value: ConfigValue) throws -> RBACInputMatcher {
        do {
            let obj = try value.object()
            if let regex = obj.optional("safe_regex"), !(try regex.object().has("google_re2")) {
                throw regex.error("'google_re2: {}' is required (xds.type.matcher.v3.RegexMatcher's engine_type; "
                    + "Envoy: \"engine_type\" is required)")
            }
        }
        return .string(try StringMatcher.decode(value))
    }

    /// `single_predicate.custom_match`: only `envoy.extensions.matching.input_matchers.ip.v3.Ip`
    /// (`cidr_ranges`, at least one; `stat_prefix`, required).
    package static func decodeCustomMatch(_ value: ConfigValue) throws -> RBACInputMatcher {
        let ext = try TypedExtension.decode(value)
        guard ext.typeName == ipType else {
            throw ext.configValue.error("custom_match '\(ext.typeName)' is not supported by Pilotfish; "
                + "only \(ipType) is")
        }
        let obj = ext.config
        let rangeValues = try obj.list("cidr_ranges")
        if rangeValues.isEmpty {
            throw (obj.optional("cidr_ranges") ?? ext.configValue).error(
                "cidr_ranges must contain at least 1 item (as Envoy requires)")
        }
        let ranges = try rangeValues.map { try decodeIPMatcherRange($0) }
        let statPrefix = try obj.optional("stat_prefix")?.string() ?? ""
        if statPrefix.isEmpty {
            throw (obj.optional("stat_prefix") ?? ext.configValue).error(
                "stat_prefix must be at least 1 character (as Envoy requires)")
        }
        try obj.finish()
        return .ip(ranges: ranges, statPrefix: statPrefix)
    }

    /// A `CidrRange` of the `Ip` matcher: as RBAC reads one, but with Envoy's message for a bad address
    /// ("malformed IP address: …").
    private static func decodeIPMatcherRange(_ value: ConfigValue) throws -> IPRange {
        let obj = try value.object()
        let text = try obj.required("address_prefix").string()
        let length = try obj.optional("prefix_len")?.uint32Int() ?? 0
        try obj.finish()
        guard let address = IPAddress(parsing: text) else { throw value.error("malformed IP address: \(text)") }
        return IPRange(address, prefixLength: length)
    }
}
