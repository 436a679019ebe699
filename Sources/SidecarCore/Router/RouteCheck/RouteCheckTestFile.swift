/// A test file of Envoy's router_check_tool: `validation.proto`'s `Validation`, in JSON or YAML.
///
/// Field names may be written in snake_case or lowerCamelCase, as protobuf's JSON mapping allows; an unknown
/// field is an error, as it is for the upstream tool. Beyond `validation.proto` as copied, `validate` also
/// takes the newer `timeout` and `route_metadata` assertions.
public struct RouteCheckTestFile: Sendable {
    public var tests: [RouteCheckCase]
    /// The top-level `runtime` overrides, by key. Pilotfish has no runtime layer, so none has an effect; the
    /// `re2.max_program_size.*` keys upstream test files use have nothing to act on (Pilotfish puts no limit
    /// on regex program size).
    public var runtimeKeys: [String]

    public init(tests: [RouteCheckCase], runtimeKeys: [String] = []) {
        self.tests = tests
        self.runtimeKeys = runtimeKeys
    }

    /// Runtime keys that are known to need no counterpart in Pilotfish.
    public static let inertRuntimeKeys: Set<String> = [
        "re2.max_program_size.error_level", "re2.max_program_size.warn_level",
    ]

    /// Parses a test file (JSON is read as YAML, which also accepts a trailing comma as upstream's
    /// `TestRoutes.golden.proto.json` has).
    public static func load(text: String) throws -> RouteCheckTestFile {
        guard let node = try ConfigDocument.parse(text) else {
            throw ConfigError(path: "", line: nil, message: "the test file is empty")
        }
        return try decode(ConfigValue(node: node, path: ""))
    }

    package static func decode(_ value: ConfigValue) throws -> RouteCheckTestFile {
        let obj = try value.object()
        let testsValue = try obj.required("tests")
        let tests = try testsValue.array().map(RouteCheckCase.decode)
        if tests.isEmpty { throw testsValue.error("a test file needs at least one test") }
        let runtime = try obj.optional("runtime")?.map().map(\.key) ?? []
        try obj.finish()
        return RouteCheckTestFile(tests: tests, runtimeKeys: runtime)
    }
}

/// `ValidationItem`: one request and what to expect of it.
public struct RouteCheckCase: Sendable {
    /// Need not be unique.
    public var name: String
    public var input: RouteCheckInput
    public var expected: RouteCheckExpectations

    package static func decode(_ value: ConfigValue) throws -> RouteCheckCase {
        let obj = try value.object()
        let name = try obj.required("test_name").nonEmptyString()
        let input = try RouteCheckInput.decode(try obj.required("input"))
        let expected = try RouteCheckExpectations.decode(try obj.required("validate"))
        try obj.finish()
        return RouteCheckCase(name: name, input: input, expected: expected)
    }
}

/// A header name as Envoy's HTTP_HEADER_NAME rule allows it: an RFC 9110 token, optionally after the ':' that
/// starts a pseudo-header.
package func isHeaderName(_ name: String) -> Bool {
    let bytes = name.utf8.first == UInt8(ascii: ":") ? name.utf8.dropFirst() : name.utf8[...]
    return !bytes.isEmpty && bytes.allSatisfy(ConfigValue.isTokenCharacter)
}

/// A header as the test file writes it (`envoy.config.core.v3.HeaderValue`).
public struct RouteCheckHeader: Sendable, Equatable {
    public var key: String
    public var value: String

    package init(key: String, value: String) {
        self.key = key
        self.value = value
    }

    package static func decode(_ value: ConfigValue) throws -> RouteCheckHeader {
        let obj = try value.object()
        let keyValue = try obj.required("key")
        let key = try keyValue.nonEmptyString()
        // Envoy's HTTP_HEADER_NAME: a token, optionally after the ':' of a pseudo-header.
        if !isHeaderName(key) {
            throw keyValue.error("header name '\(key)' is not an HTTP header name (a token, optionally after ':')")
        }
        let v = try obj.optional("value")?.headerValueText() ?? ""
        try obj.unsupported(["raw_value"])
        try obj.finish()
        return RouteCheckHeader(key: key, value: v)
    }
}

/// `ValidationInput`: the request handed to the router.
public struct RouteCheckInput: Sendable {
    public var authority: String
    /// `:path`, query string included.
    public var path: String
    public var method: String
    /// Picks weighted clusters and decides `runtime_fraction` routes.
    public var randomValue: UInt64 = 0
    /// `x-forwarded-proto: https` (and `:scheme`) instead of `http`.
    public var ssl = false
    /// Adds `x-envoy-internal: true`.
    public var isInternal = false
    /// The one runtime key that is on for this request; "" switches none on.
    public var runtime = ""
    public var additionalRequestHeaders: [RouteCheckHeader] = []
    public var additionalResponseHeaders: [RouteCheckHeader] = []
    /// Applied in order, as the set_metadata filter would (see `RouteCheckDynamicMetadata`).
    public var dynamicMetadata: [RouteCheckDynamicMetadata] = []

    package init(authority: String, path: String, method: String) {
        self.authority = authority
        self.path = path
        self.method = method
    }

    package static func decode(_ value: ConfigValue) throws -> RouteCheckInput {
        let obj = try value.object()
        let authority = try obj.required("authority").nonEmptyString()
        let path = try obj.required("path").nonEmptyString()
        let methodValue = try obj.required("method")
        let method = try methodValue.string()
        if method.count < 3 { throw methodValue.error("method must be at least 3 characters long") }
        var input = RouteCheckInput(authority: authority, path: path, method: method)
        input.randomValue = UInt64(try obj.optional("random_value")?.int(min: 0) ?? 0)
        input.ssl = try obj.optional("ssl")?.bool() ?? false
        input.isInternal = try obj.optional("internal")?.bool() ?? false
        input.runtime = try obj.optional("runtime")?.string() ?? ""
        input.additionalRequestHeaders = try obj.list("additional_request_headers").map(RouteCheckHeader.decode)
        input.additionalResponseHeaders = try obj.list("additional_response_headers").map(RouteCheckHeader.decode)
        input.dynamicMetadata = try obj.list("dynamic_metadata").map(RouteCheckDynamicMetadata.decode)
        try obj.finish()
        return input
    }
}

/// One `dynamic_metadata` entry (`envoy.extensions.filters.http.set_metadata.v3.Metadata`).
public struct RouteCheckDynamicMetadata: Sendable {
    public var namespace: String
    public var value: [String: MetadataValue]
    /// When the namespace already holds metadata: false leaves it as it is; true merges this entry's fields
    /// into it, each replacing the field of the same name.
    public var allowOverwrite: Bool

    package static func decode(_ value: ConfigValue) throws -> RouteCheckDynamicMetadata {
        let obj = try value.object()
        let namespace = try obj.required("metadata_namespace").nonEmptyString()
        try obj.unsupported(["typed_value"])
        var fields: [String: MetadataValue] = [:]
        if let v = obj.optional("value") {
            guard case .structure(let f) = try MetadataValue.decode(v) else {
                throw v.error("value must be a mapping (a google.protobuf.Struct)")
            }
            fields = f
        }
        let allowOverwrite = try obj.optional("allow_overwrite")?.bool() ?? false
        try obj.finish()
        return RouteCheckDynamicMetadata(namespace: namespace, value: fields, allowOverwrite: allowOverwrite)
    }

    /// The stream's dynamic metadata after the entries are set in order.
    package static func apply(_ entries: [RouteCheckDynamicMetadata]) -> Metadata {
        var metadata = Metadata()
        for e in entries {
            if let existing = metadata.filterMetadata[e.namespace] {
                guard e.allowOverwrite else { continue }
                metadata.filterMetadata[e.namespace] = existing.merging(e.value) { _, new in new }
            } else {
                metadata.filterMetadata[e.namespace] = e.value
            }
        }
        return metadata
    }
}

/// `ValidationAssert`: only what is set is checked; `""` expects nothing (no route, no cluster, no redirect).
public struct RouteCheckExpectations: Sendable {
    public var clusterName: String?
    public var virtualClusterName: String?
    public var virtualHostName: String?
    public var hostRewrite: String?
    public var pathRewrite: String?
    public var pathRedirect: String?
    public var codeRedirect: UInt32?
    /// Deprecated exact-value checks (a missing header reads as "").
    public var requestHeaderFields: [RouteCheckHeader] = []
    public var responseHeaderFields: [RouteCheckHeader] = []
    public var requestHeaderMatches: [RouteCheckHeaderMatch] = []
    public var responseHeaderMatches: [RouteCheckHeaderMatch] = []
    /// The forwarding route's timeout, compared in milliseconds.
    public var timeout: ProtoDuration?
    public var routeMetadata: [RouteCheckMetadataEntry] = []

    public init() {}

    package static func decode(_ value: ConfigValue) throws -> RouteCheckExpectations {
        let obj = try value.object()
        var e = RouteCheckExpectations()
        e.clusterName = try obj.optional("cluster_name")?.string()
        e.virtualClusterName = try obj.optional("virtual_cluster_name")?.string()
        e.virtualHostName = try obj.optional("virtual_host_name")?.string()
        e.hostRewrite = try obj.optional("host_rewrite")?.string()
        e.pathRewrite = try obj.optional("path_rewrite")?.string()
        e.pathRedirect = try obj.optional("path_redirect")?.string()
        e.codeRedirect = try obj.optional("code_redirect")?.uint32()
        e.requestHeaderFields = try obj.list("request_header_fields").map(RouteCheckHeader.decode)
        e.responseHeaderFields = try obj.list("response_header_fields").map(RouteCheckHeader.decode)
        e.requestHeaderMatches = try obj.list("request_header_matches").map(RouteCheckHeaderMatch.decode)
        e.responseHeaderMatches = try obj.list("response_header_matches").map(RouteCheckHeaderMatch.decode)
        e.timeout = try obj.optional("timeout")?.duration()
        e.routeMetadata = try obj.list("route_metadata").map(RouteCheckMetadataEntry.decode)
        try obj.finish()
        return e
    }
}

/// A `request_header_matches`/`response_header_matches` entry: a route `HeaderMatcher`, plus how the test
/// file wrote it, which the failure report names.
public struct RouteCheckHeaderMatch: Sendable {
    public var matcher: HeaderMatcher
    /// The header name as written.
    public var name: String
    /// The match specifier as the upstream tool names it: `string_match.exact`, `present_match`,
    /// `range_match`, `prefix_match`, …
    public var kind: String
    /// The `string_match.exact` value, which the report shows as the expected value.
    public var exact: String?

    package static let legacyKinds = [
        "exact_match", "safe_regex_match", "range_match", "present_match", "prefix_match", "suffix_match",
        "contains_match",
    ]
    package static let stringKinds = ["exact", "prefix", "suffix", "safe_regex", "contains"]

    package static func decode(_ value: ConfigValue) throws -> RouteCheckHeaderMatch {
        let matcher = try HeaderMatcher.decode(value)
        let name = try value.child("name")?.string() ?? matcher.name
        var kind = "present_match"  // also when no specifier is set, as upstream names it
        var exact: String?
        if let sm = value.child("string_match") {
            let pattern = stringKinds.first { sm.child($0) != nil } ?? "match_pattern_not_set"
            kind = "string_match." + pattern
            if pattern == "exact" { exact = try sm.child("exact")?.string() }
        } else if let legacy = legacyKinds.first(where: { value.child($0) != nil }) {
            kind = legacy
        }
        return RouteCheckHeaderMatch(matcher: matcher, name: name, kind: kind, exact: exact)
    }
}

/// A `route_metadata` entry: the string expected at `key` in the route's `filter_metadata[namespace]`.
public struct RouteCheckMetadataEntry: Sendable {
    public var namespace: String
    public var key: String
    public var value: String

    package static func decode(_ value: ConfigValue) throws -> RouteCheckMetadataEntry {
        let obj = try value.object()
        let namespace = try obj.required("namespace").nonEmptyString()
        let key = try obj.required("key").nonEmptyString()
        let v = try obj.optional("value")?.string() ?? ""
        try obj.finish()
        return RouteCheckMetadataEntry(namespace: namespace, key: key, value: v)
    }
}
