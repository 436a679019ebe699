import NIOHTTP1

/// `envoy.config.route.v3.HeaderMatcher`, including the pre-`string_match` fields.
public struct HeaderMatcher: Sendable {
    public enum Rule: Sendable {
        case string(StringMatcher)
        case present(Bool)
        case range(start: Int64, end: Int64)
    }

    public var name: String
    public var rule: Rule
    public var invert: Bool
    public var treatMissingAsEmpty: Bool

    /// Multiple values of one header are joined with "," before matching, as in Envoy. A missing header
    /// matches only `present_match: false`, or `present_match: true` inverted (Envoy's HeaderUtility).
    public func matches(_ lookup: (String) -> String?) -> Bool {
        guard let value = lookup(name) ?? (treatMissingAsEmpty ? "" : nil) else {
            if case .present(let expected) = rule { return invert ? expected : !expected }
            return false
        }
        let result: Bool
        switch rule {
        case .present(let expected):
            result = expected
        case .string(let m):
            result = m.matches(value)
        case .range(let start, let end):
            guard let n = Int64(value) else { return invert }
            result = n >= start && n < end
        }
        return result != invert
    }
}

extension HeaderMatcher {
    package static func decode(_ value: ConfigValue) throws -> HeaderMatcher {
        let obj = try value.object()
        let name = try obj.required("name").nonEmptyString().lowercased()
        let invert = try obj.optional("invert_match")?.bool() ?? false
        let missingEmpty = try obj.optional("treat_missing_header_as_empty")?.bool() ?? false
        let keys = ["string_match", "present_match", "range_match", "exact_match", "prefix_match", "suffix_match",
                    "contains_match", "safe_regex_match"]
        let rule: Rule
        if let (key, v) = try obj.oneOf(keys, required: false) {
            switch key {
            case "string_match": rule = .string(try StringMatcher.decode(v))
            case "present_match": rule = .present(try v.bool())
            case "range_match":
                let r = try v.object()
                let start = try r.required("start").int()
                let end = try r.required("end").int()
                try r.finish()
                if start >= end { throw v.error("range_match start must be below end") }
                rule = .range(start: start, end: end)
            case "exact_match":
                // Legacy exact_match: an empty value matches any value (Envoy's HeaderMatchType::Value).
                let exact = try v.string()
                rule = exact.isEmpty ? .present(true) : .string(StringMatcher(kind: .exact(exact), ignoreCase: false))
            case "prefix_match": rule = .string(StringMatcher(kind: .prefix(try v.nonEmptyString()), ignoreCase: false))
            case "suffix_match": rule = .string(StringMatcher(kind: .suffix(try v.nonEmptyString()), ignoreCase: false))
            case "contains_match": rule = .string(StringMatcher(kind: .contains(try v.nonEmptyString()), ignoreCase: false))
            default: rule = .string(StringMatcher(kind: .regex(try StringMatcher.decodeRegexMatcher(v)), ignoreCase: false))
            }
        } else {
            // No rule: the header must be present (Envoy's default).
            rule = .present(true)
        }
        try obj.finish()
        return HeaderMatcher(name: name, rule: rule, invert: invert, treatMissingAsEmpty: missingEmpty)
    }
}

/// `envoy.config.route.v3.QueryParameterMatcher`.
public struct QueryParameterMatcher: Sendable {
    public var name: String
    public var matcher: StringMatcher?  // nil: present_match

    package static func decode(_ value: ConfigValue) throws -> QueryParameterMatcher {
        let obj = try value.object()
        let name = try obj.required("name").nonEmptyString()
        var m: StringMatcher?
        if let (key, v) = try obj.oneOf(["string_match", "present_match"], required: false) {
            if key == "string_match" {
                m = try StringMatcher.decode(v)
            } else if try !v.bool() {
                throw v.error("present_match: false is not meaningful; omit the matcher")
            }
        }
        try obj.finish()
        return QueryParameterMatcher(name: name, matcher: m)
    }
}
