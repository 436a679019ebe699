/// `envoy.config.core.v3.Metadata`: per-namespace structs that Pilotfish carries but does not interpret.
public struct Metadata: Sendable, Hashable {
    /// `filter_metadata`, keyed by namespace (such as `envoy.filters.http.router`).
    public var filterMetadata: [String: [String: MetadataValue]] = [:]

    public init(filterMetadata: [String: [String: MetadataValue]] = [:]) {
        self.filterMetadata = filterMetadata
    }

    public var isEmpty: Bool { filterMetadata.isEmpty }

    /// The value at `key` in `namespace`, if any.
    public func value(namespace: String, key: String) -> MetadataValue? {
        filterMetadata[namespace]?[key]
    }
}

/// A `google.protobuf.Value`.
public enum MetadataValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case list([MetadataValue])
    case structure([String: MetadataValue])
}

extension Metadata {
    package static func decode(_ value: ConfigValue) throws -> Metadata {
        let obj = try value.object()
        try obj.unsupported(["typed_filter_metadata"])
        var filterMetadata: [String: [String: MetadataValue]] = [:]
        if let fm = obj.optional("filter_metadata") {
            for (namespace, structValue) in try fm.map() {
                guard case .structure(let fields) = try MetadataValue.decode(structValue) else {
                    throw structValue.error("filter_metadata '\(namespace)' must be a mapping")
                }
                filterMetadata[namespace] = fields
            }
        }
        try obj.finish()
        return Metadata(filterMetadata: filterMetadata)
    }
}

extension MetadataValue {
    /// YAML scalars become what Envoy's YAML-to-JSON step makes of them: plain `true`/`false`, numbers and
    /// `null` keep their type, everything else (and anything quoted) is a string.
    package static func decode(_ value: ConfigValue) throws -> MetadataValue {
        switch value.node {
        case .mapping:
            var fields: [String: MetadataValue] = [:]
            for (key, child) in try value.map() { fields[key] = try decode(child) }
            return .structure(fields)
        case .sequence:
            return .list(try value.array().map(decode))
        case .scalar(let s):
            guard s.style == .plain else { return .string(s.string) }
            if value.isNull { return .null }
            switch s.string {
            case "true", "True", "TRUE": return .bool(true)
            case "false", "False", "FALSE": return .bool(false)
            default: break
            }
            let looksNumeric = s.string.first.map { $0.isNumber || $0 == "-" || $0 == "+" || $0 == "." } ?? false
            if looksNumeric, let d = Double(s.string) { return .number(d) }
            return .string(s.string)
        case .alias:
            throw value.error("YAML aliases are not supported in metadata")
        }
    }
}
