import Yams

/// Parses YAML or JSON (JSON is read as YAML, so both report line numbers).
enum ConfigDocument {
    static func parse(_ text: String) throws -> Node? {
        do {
            return try Yams.compose(yaml: text)
        } catch let e as YamlError {
            var line: Int?
            switch e {
            case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
                line = mark.line
            default:
                line = nil
            }
            throw ConfigError(path: "", line: line, message: "cannot parse config: \(e)")
        }
    }
}

/// A node of a parsed config document together with the field path that reached it.
///
/// Decoding walks the document through these values, so every error can name the path and line.
struct ConfigValue {
    let node: Node
    let path: String

    var line: Int? { node.mark?.line }

    func error(_ message: String) -> ConfigError {
        ConfigError(path: path, line: line, message: message)
    }

    var isNull: Bool {
        if case .scalar(let s) = node, s.style == .plain, s.tag == .implicit || s.tag.rawValue == Tag.Name.null.rawValue {
            return s.string == "" || s.string == "~" || s.string == "null" || s.string == "Null" || s.string == "NULL"
        }
        return false
    }

    private var kindName: String {
        switch node {
        case .scalar: return "a scalar"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    func object() throws -> ConfigObject {
        guard case .mapping(let mapping) = node else { throw error("expected a mapping, found \(kindName)") }
        return try ConfigObject(self, mapping)
    }

    func array() throws -> [ConfigValue] {
        guard case .sequence(let seq) = node else { throw error("expected a list, found \(kindName)") }
        return seq.enumerated().map { ConfigValue(node: $0.element, path: "\(path)[\($0.offset)]") }
    }

    /// A mapping whose keys are user data (metadata namespaces, map fields), in document order.
    func map() throws -> [(key: String, value: ConfigValue)] {
        guard case .mapping(let mapping) = node else { throw error("expected a mapping, found \(kindName)") }
        return try mapping.map { pair in
            guard case .scalar(let k) = pair.key else {
                throw ConfigValue(node: pair.key, path: path).error("mapping keys must be scalars")
            }
            return (k.string, ConfigValue(node: pair.value, path: "\(path).\(k.string)"))
        }
    }

    func string() throws -> String {
        guard case .scalar(let s) = node else { throw error("expected a string, found \(kindName)") }
        return s.string
    }

    func nonEmptyString() throws -> String {
        let s = try string()
        if s.isEmpty { throw error("must not be empty") }
        return s
    }

    func int(min: Int64 = Int64.min, max: Int64 = Int64.max) throws -> Int64 {
        guard case .scalar(let s) = node, let v = Int64(s.string) else {
            throw error("expected an integer, found \(describeScalar)")
        }
        if v < min || v > max { throw error("\(v) is out of range [\(min), \(max)]") }
        return v
    }

    func uint32() throws -> UInt32 { UInt32(try int(min: 0, max: Int64(UInt32.max))) }

    func bool() throws -> Bool {
        guard case .scalar(let s) = node else { throw error("expected true or false, found \(kindName)") }
        switch s.string.lowercased() {
        case "true": return true
        case "false": return false
        default: throw error("expected true or false, found '\(s.string)'")
        }
    }

    func double() throws -> Double {
        guard case .scalar(let s) = node, let v = Double(s.string) else {
            throw error("expected a number, found \(describeScalar)")
        }
        return v
    }

    /// A protobuf Duration: the JSON form "1.5s", or the YAML form `{seconds: 1, nanos: 500000000}`.
    func duration() throws -> ProtoDuration {
        if case .mapping = node {
            let obj = try object()
            let seconds = try obj.optional("seconds")?.int(min: 0, max: 315_576_000_000) ?? 0
            let nanos = try obj.optional("nanos")?.int(min: 0, max: 999_999_999) ?? 0
            try obj.finish()
            return ProtoDuration(nanoseconds: seconds * 1_000_000_000 + nanos)
        }
        let text = try string()
        guard let d = ProtoDuration(parsing: text) else {
            throw error("invalid duration '\(text)': expected a number of seconds ending in 's', such as \"0.25s\"")
        }
        return d
    }

    func enumValue<E: RawRepresentable>(_ type: E.Type) throws -> E where E.RawValue == String, E: CaseIterable {
        let text = try string()
        guard let v = E(rawValue: text) else {
            let allowed = E.allCases.map(\.rawValue).joined(separator: ", ")
            throw error("unknown value '\(text)'; expected one of: \(allowed)")
        }
        return v
    }

    /// The value of field `key` of this mapping, read without marking it used. For locating errors
    /// found after decoding (cross-references), so that they too can name a line.
    func child(_ key: String) -> ConfigValue? {
        guard case .mapping(let mapping) = node else { return nil }
        for pair in mapping {
            guard case .scalar(let k) = pair.key else { continue }
            let name = k.string == "@type" ? k.string : ConfigObject.snakeCase(k.string)
            if name == key { return ConfigValue(node: pair.value, path: path.isEmpty ? key : "\(path).\(key)") }
        }
        return nil
    }

    /// Element `index` of this list, without decoding it.
    func element(_ index: Int) -> ConfigValue? {
        guard case .sequence(let seq) = node, seq.indices.contains(index) else { return nil }
        return ConfigValue(node: seq[index], path: "\(path)[\(index)]")
    }

    /// Follows a field path such as `static_resources.clusters[1].name` down from this value.
    /// Returns the deepest value reached, so an error still gets the nearest line when the path
    /// does not exist in the document.
    func locate(_ relativePath: String) -> ConfigValue {
        var current = self
        for component in relativePath.split(separator: ".") {
            var name = Substring(component)
            var indices: [Int] = []
            while name.hasSuffix("]"), let open = name.lastIndex(of: "["),
                  let i = Int(name[name.index(after: open)..<name.index(before: name.endIndex)]) {
                indices.insert(i, at: 0)
                name = name[..<open]
            }
            if !name.isEmpty {
                guard let next = current.child(String(name)) else { return current }
                current = next
            }
            for i in indices {
                guard let next = current.element(i) else { return current }
                current = next
            }
        }
        return current
    }

    /// An error at `relativePath` below this value, with that field's line when it is in the document.
    func error(at relativePath: String, _ message: String) -> ConfigError {
        let found = locate(relativePath)
        let full = path.isEmpty ? relativePath : "\(path).\(relativePath)"
        return ConfigError(path: full, line: found.line, message: message)
    }

    private var describeScalar: String {
        if case .scalar(let s) = node { return "'\(s.string)'" }
        return kindName
    }
}

/// A config mapping that remembers which fields were read, so that anything left over is reported
/// rather than silently ignored.
final class ConfigObject {
    let value: ConfigValue
    private var fields: [(key: String, node: Node)] = []
    private var used: Set<String> = []

    var path: String { value.path }

    init(_ value: ConfigValue, _ mapping: Node.Mapping) throws {
        self.value = value
        for pair in mapping {
            guard case .scalar(let k) = pair.key else {
                throw ConfigValue(node: pair.key, path: value.path).error("field names must be strings")
            }
            let name = k.string == "@type" ? k.string : Self.snakeCase(k.string)
            if fields.contains(where: { $0.key == name }) {
                throw ConfigValue(node: pair.key, path: childPath(name)).error("duplicate field '\(k.string)'")
            }
            fields.append((name, pair.value))
        }
    }

    /// Envoy's JSON accepts both `lb_policy` and `lbPolicy`.
    static func snakeCase(_ name: String) -> String {
        guard name.contains(where: \.isUppercase) else { return name }
        var out = ""
        for ch in name {
            if ch.isUppercase {
                out += "_" + ch.lowercased()
            } else {
                out.append(ch)
            }
        }
        return out
    }

    func childPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func has(_ key: String) -> Bool {
        fields.contains { $0.key == key && !ConfigValue(node: $0.node, path: "").isNull }
    }

    func optional(_ key: String) -> ConfigValue? {
        used.insert(key)
        guard let f = fields.first(where: { $0.key == key }) else { return nil }
        let v = ConfigValue(node: f.node, path: childPath(key))
        return v.isNull ? nil : v
    }

    func required(_ key: String) throws -> ConfigValue {
        guard let v = optional(key) else { throw value.error("missing required field '\(key)'") }
        return v
    }

    func list(_ key: String) throws -> [ConfigValue] {
        try optional(key)?.array() ?? []
    }

    /// Exactly one of `keys` must be present (a protobuf oneof that is required).
    func oneOf(_ keys: [String], required: Bool = true) throws -> (key: String, value: ConfigValue)? {
        let present = keys.compactMap { k in optional(k).map { (k, $0) } }
        if present.count > 1 {
            throw present[1].1.error("only one of \(keys.joined(separator: ", ")) may be set; '\(present[0].0)' is already set")
        }
        if present.isEmpty && required {
            throw value.error("one of \(keys.joined(separator: ", ")) is required")
        }
        return present.first
    }

    /// Fields that Envoy defines but Pilotfish does not implement yet: an error, never a silent no-op.
    func unsupported(_ keys: [String]) throws {
        for key in keys {
            if let v = optional(key) {
                throw v.error("field '\(key)' is a valid Envoy field but is not supported by Pilotfish yet")
            }
        }
    }

    /// Reports the first field that no decoder consumed.
    func finish() throws {
        for f in fields where !used.contains(f.key) {
            throw ConfigValue(node: f.node, path: childPath(f.key)).error("unknown field '\(f.key)'")
        }
    }
}
