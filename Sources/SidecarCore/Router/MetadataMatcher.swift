/// `envoy.type.matcher.v3.MetadataMatcher`: the value at `path` inside one filter's metadata namespace.
public struct MetadataMatcher: Sendable {
    public var filter: String
    /// Keys into nested structs, outermost first.
    public var path: [String]
    public var value: ValueMatcher
    public var invert: Bool

    /// Envoy's `Matchers::MetadataMatcher::match`: a missing namespace or key is a value of no kind, which
    /// only a negated match (`invert`) accepts.
    public func matches(_ metadata: Metadata) -> Bool {
        var current: MetadataValue? = metadata.filterMetadata[filter].map { .structure($0) }
        for key in path {
            guard case .structure(let fields)? = current else {
                current = nil
                break
            }
            current = fields[key]
        }
        return value.matches(current) != invert
    }
}

/// `envoy.type.matcher.v3.ValueMatcher`, applied to a `google.protobuf.Value` (nil: no value).
public indirect enum ValueMatcher: Sendable {
    case null
    case double(DoubleMatch)
    case string(StringMatcher)
    case bool(Bool)
    case present(Bool)
    /// `list_match`: the value is a list and one of its elements matches.
    case list(ValueMatcher)
    case or([ValueMatcher])

    /// `envoy.type.matcher.v3.DoubleMatcher`.
    public enum DoubleMatch: Sendable {
        /// `[start, end)`.
        case range(start: Double, end: Double)
        case exact(Double)
    }

    public func matches(_ value: MetadataValue?) -> Bool {
        switch self {
        case .null:
            if case .null? = value { return true }
            return false
        case .double(let m):
            guard case .number(let n)? = value else { return false }
            switch m {
            case .range(let start, let end): return start <= n && n < end
            case .exact(let e): return n == e
            }
        case .string(let m):
            guard case .string(let s)? = value else { return false }
            return m.matches(s)
        case .bool(let expected):
            guard case .bool(let b)? = value else { return false }
            return b == expected
        case .present(let expected):
            return expected && value != nil
        case .list(let element):
            guard case .list(let items)? = value else { return false }
            return items.contains { element.matches($0) }
        case .or(let matchers):
            return matchers.contains { $0.matches(value) }
        }
    }
}

extension MetadataMatcher {
    package static func decode(_ value: ConfigValue) throws -> MetadataMatcher {
        let obj = try value.object()
        let filter = try obj.required("filter").nonEmptyString()
        let pathValue = try obj.required("path")
        let path = try pathValue.array().map { segment -> String in
            let s = try segment.object()
            let key = try s.required("key").nonEmptyString()
            try s.finish()
            return key
        }
        if path.isEmpty { throw pathValue.error("a metadata matcher needs at least one path segment") }
        let matcher = try ValueMatcher.decode(try obj.required("value"))
        let invert = try obj.optional("invert")?.bool() ?? false
        try obj.finish()
        return MetadataMatcher(filter: filter, path: path, value: matcher, invert: invert)
    }
}

extension ValueMatcher {
    package static func decode(_ value: ConfigValue) throws -> ValueMatcher {
        let obj = try value.object()
        let keys = ["null_match", "double_match", "string_match", "bool_match", "present_match", "list_match",
                    "or_match"]
        guard let (key, v) = try obj.oneOf(keys) else { fatalError("unreachable: oneOf is required") }
        let matcher: ValueMatcher
        switch key {
        case "null_match":
            try v.object().finish()  // NullMatch has no fields.
            matcher = .null
        case "double_match":
            let d = try v.object()
            guard let (dk, dv) = try d.oneOf(["range", "exact"]) else { fatalError("unreachable") }
            if dk == "exact" {
                matcher = .double(.exact(try dv.double()))
            } else {
                let r = try dv.object()
                let start = try r.optional("start")?.double() ?? 0
                let end = try r.optional("end")?.double() ?? 0
                try r.finish()
                matcher = .double(.range(start: start, end: end))
            }
            try d.finish()
        case "string_match":
            matcher = .string(try StringMatcher.decode(v))
        case "bool_match":
            matcher = .bool(try v.bool())
        case "present_match":
            matcher = .present(try v.bool())
        case "list_match":
            let l = try v.object()
            matcher = .list(try ValueMatcher.decode(try l.required("one_of")))
            try l.finish()
        default:
            let o = try v.object()
            let matchersValue = try o.required("value_matchers")
            let matchers = try matchersValue.array().map(ValueMatcher.decode)
            if matchers.count < 2 { throw matchersValue.error("or_match needs at least two value_matchers") }
            try o.finish()
            matcher = .or(matchers)
        }
        try obj.finish()
        return matcher
    }
}
