import Yams

/// Parses YAML or JSON (JSON is read as YAML, so both report line numbers).
package enum ConfigDocument {
    package static func parse(_ text: String) throws -> Node? {
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
package struct ConfigValue {
    package let node: Node
    package let path: String
    /// The decoding pass this value was read in; nil for a value made on its own (then `object()` starts one).
    package var session: ConfigSession? = nil

    package init(node: Node, path: String, session: ConfigSession? = nil) {
        self.node = node
        self.path = path
        self.session = session
    }

    package var line: Int? { node.mark?.line }

    /// An error about this value. While mappings around it are still being decoded, their unknown fields are
    /// reported instead (see `ConfigSession`): they are the likelier cause.
    package func error(_ message: String) -> ConfigError {
        let error = ConfigError(path: path, line: line, message: message)
        return session?.resolve(error) ?? error
    }

    /// The HTTP filters this pass knows (none for a value made on its own).
    package var httpFilters: HTTPFilterCatalog { session?.httpFilters ?? .none }

    /// A value below this one, read in the same pass.
    package func descendant(_ node: Node, path: String) -> ConfigValue {
        ConfigValue(node: node, path: path, session: session)
    }

    package var isNull: Bool {
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

    package func object() throws -> ConfigObject {
        guard case .mapping(let mapping) = node else { throw error("expected a mapping, found \(kindName)") }
        var value = self
        let session = value.session ?? ConfigSession(httpFilters: .none)
        value.session = session
        let object = try ConfigObject(value, mapping)
        session.register(object)
        return object
    }

    package func array() throws -> [ConfigValue] {
        guard case .sequence(let seq) = node else { throw error("expected a list, found \(kindName)") }
        return seq.enumerated().compactMap { i, element in
            let elementPath = "\(path)[\(i)]"
            // An element an earlier pass found an error in (see `ConfigSession.decode`).
            if session?.isExcluded(elementPath) == true { return nil }
            return descendant(element, path: elementPath)
        }
    }

    /// A mapping whose keys are user data (metadata namespaces, map fields), in document order.
    package func map() throws -> [(key: String, value: ConfigValue)] {
        guard case .mapping(let mapping) = node else { throw error("expected a mapping, found \(kindName)") }
        return try mapping.map { pair in
            guard case .scalar(let k) = pair.key else {
                throw ConfigError(path: path, line: pair.key.mark?.line, message: "mapping keys must be scalars")
            }
            return (k.string, descendant(pair.value, path: "\(path).\(k.string)"))
        }
    }

    package func string() throws -> String {
        guard case .scalar(let s) = node else { throw error("expected a string, found \(kindName)") }
        return s.string
    }

    package func nonEmptyString() throws -> String {
        let s = try string()
        if s.isEmpty { throw error("must not be empty") }
        return s
    }

    package func int(min: Int64 = Int64.min, max: Int64 = Int64.max) throws -> Int64 {
        guard case .scalar(let s) = node, let v = Int64(s.string) else {
            throw error("expected an integer, found \(describeScalar)")
        }
        if v < min || v > max { throw error("\(v) is out of range [\(min), \(max)]") }
        return v
    }

    package func uint32() throws -> UInt32 { UInt32(try int(min: 0, max: Int64(UInt32.max))) }

    package func bool() throws -> Bool {
        guard case .scalar(let s) = node else { throw error("expected true or false, found \(kindName)") }
        switch s.string.lowercased() {
        case "true": return true
        case "false": return false
        default: throw error("expected true or false, found '\(s.string)'")
        }
    }

    package func double() throws -> Double {
        guard case .scalar(let s) = node, let v = Double(s.string) else {
            throw error("expected a number, found \(describeScalar)")
        }
        return v
    }

    /// A protobuf Duration: the JSON form "1.5s", or the YAML form `{seconds: 1, nanos: 500000000}`.
    package func duration() throws -> ProtoDuration {
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

    package func enumValue<E: RawRepresentable>(_ type: E.Type) throws -> E where E.RawValue == String, E: CaseIterable {
        let text = try string()
        guard let v = E(rawValue: text) else {
            let allowed = E.allCases.map(\.rawValue).joined(separator: ", ")
            throw error("unknown value '\(text)'; expected one of: \(allowed)")
        }
        return v
    }

    /// The value of field `key` of this mapping, read without marking it used. For locating errors
    /// found after decoding (cross-references), so that they too can name a line.
    package func child(_ key: String) -> ConfigValue? {
        guard case .mapping(let mapping) = node else { return nil }
        for pair in mapping {
            guard case .scalar(let k) = pair.key else { continue }
            let name = k.string == "@type" ? k.string : ConfigObject.snakeCase(k.string)
            if name == key { return descendant(pair.value, path: path.isEmpty ? key : "\(path).\(key)") }
        }
        return nil
    }

    /// Element `index` of this list as decoding saw it, without decoding it: elements `array()` left out (see
    /// `ConfigSession.decode`) are not counted, so that an index into a decoded array finds its element.
    package func element(_ index: Int) -> ConfigValue? {
        guard case .sequence(let seq) = node else { return nil }
        var kept = 0
        for (i, element) in seq.enumerated() {
            let elementPath = "\(path)[\(i)]"
            if session?.isExcluded(elementPath) == true { continue }
            if kept == index { return descendant(element, path: elementPath) }
            kept += 1
        }
        return nil
    }

    /// Follows a field path such as `static_resources.clusters[1].name` down from this value.
    /// Returns the deepest value reached, so an error still gets the nearest line when the path
    /// does not exist in the document.
    package func locate(_ relativePath: String) -> ConfigValue {
        locateFully(relativePath).value
    }

    /// `locate`, and whether the whole path was found.
    private func locateFully(_ relativePath: String) -> (value: ConfigValue, complete: Bool) {
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
                guard let next = current.child(String(name)) else { return (current, false) }
                current = next
            }
            for i in indices {
                guard let next = current.element(i) else { return (current, false) }
                current = next
            }
        }
        return (current, true)
    }

    /// An error at `relativePath` below this value, with that field's line when it is in the document.
    /// `relativePath`'s indices count decoded elements (see `element`); the error names the document's.
    package func error(at relativePath: String, _ message: String) -> ConfigError {
        let (found, complete) = locateFully(relativePath)
        let full = complete ? found.path : path.isEmpty ? relativePath : "\(path).\(relativePath)"
        return ConfigError(path: full, line: found.line, message: message)
    }

    private var describeScalar: String {
        if case .scalar(let s) = node { return "'\(s.string)'" }
        return kindName
    }
}

/// A config mapping that remembers which fields were read, so that anything left over is reported
/// rather than silently ignored.
package final class ConfigObject {
    package let value: ConfigValue
    private var fields: [(key: String, node: Node, keyLine: Int?)] = []
    /// Which of `fields` a decoder took, by index (a bit each for the first 64; a mapping rarely has more).
    private var usedMask: UInt64 = 0
    private var usedBeyond: Set<Int> = []
    /// Every key a decoder asked for, present or not, in order: what tells, on an error, which message this
    /// mapping is (`knownFields`). Kept as a list: hashing each key on the way was a tenth of decoding time.
    private var queried: [String] = []
    /// The keys asked for, as a set (error paths only).
    private var used: Set<String> { Set(queried) }
    /// Fields asked about with `has`, which does not consume them.
    private var mentioned: Set<String> = []
    /// Set once `finish()` has found nothing left over.
    package private(set) var isFinished = false

    package var path: String { value.path }

    package init(_ value: ConfigValue, _ mapping: Node.Mapping) throws {
        self.value = value
        for pair in mapping {
            guard case .scalar(let k) = pair.key else {
                throw ConfigError(path: value.path, line: pair.key.mark?.line, message: "field names must be strings")
            }
            let name = k.string == "@type" ? k.string : Self.snakeCase(k.string)
            if fields.contains(where: { $0.key == name }) {
                throw ConfigError(path: childPath(name), line: pair.key.mark?.line, message: "duplicate field '\(k.string)'")
            }
            fields.append((name, pair.value, pair.key.mark?.line))
        }
    }

    /// Envoy's JSON accepts both `lb_policy` and `lbPolicy`.
    package static func snakeCase(_ name: String) -> String {
        // Most keys are ASCII snake_case already: a byte scan, not a walk over Characters.
        var ascii = true, upper = false
        for b in name.utf8 {
            if b >= 0x80 { ascii = false; break }
            if b >= 0x41 && b <= 0x5A { upper = true; break }
        }
        if ascii && !upper { return name }
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

    package func childPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    package func has(_ key: String) -> Bool {
        mentioned.insert(key)
        return fields.contains { $0.key == key && !ConfigValue(node: $0.node, path: "").isNull }
    }

    package func optional(_ key: String) -> ConfigValue? {
        queried.append(key)
        guard let i = fields.firstIndex(where: { $0.key == key }) else { return nil }
        if i < 64 { usedMask |= 1 << UInt64(i) } else { usedBeyond.insert(i) }
        let f = fields[i]
        let v = value.descendant(f.node, path: childPath(key))
        return v.isNull ? nil : v
    }

    package func required(_ key: String) throws -> ConfigValue {
        guard let v = optional(key) else { throw value.error("missing required field '\(key)'") }
        return v
    }

    package func list(_ key: String) throws -> [ConfigValue] {
        try optional(key)?.array() ?? []
    }

    /// Exactly one of `keys` must be present (a protobuf oneof that is required).
    package func oneOf(_ keys: [String], required: Bool = true) throws -> (key: String, value: ConfigValue)? {
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
    /// In a decoding session the error is recorded and decoding goes on without the field, so that the errors
    /// beside it (and other unsupported fields of the same mapping) are reported in the same run.
    package func unsupported(_ keys: [String]) throws {
        for key in keys {
            if let v = optional(key) {
                let error = v.error("field '\(key)' is a valid Envoy field but is not supported by Pilotfish yet")
                guard let session = value.session, session.defersUnsupported else { throw error }
                session.unsupportedFields.append(error)
            }
        }
    }

    /// Reports every field that no decoder consumed (and the unknown fields of the mappings around this one
    /// that are still being decoded, since their decoding stops here too).
    package func finish() throws {
        if let session = value.session, session.recordsFieldGaps, knownFields == nil {
            session.fieldGaps.append("\(path.isEmpty ? "<root>" : path): \(used.union(mentioned).sorted())")
        }
        let leftOver = fields.indices.filter { i in i < 64 ? usedMask & (1 << UInt64(i)) == 0 : !usedBeyond.contains(i) }
            .map { fields[$0] }
        guard !leftOver.isEmpty else {
            isFinished = true
            return
        }
        let known = knownFields ?? used.union(mentioned)
        let errors = leftOver.map { unknownFieldError($0.key, line: $0.keyLine, known: known) }
        let around = value.session?.unknownFields(around: path, besides: self) ?? []
        throw ConfigError(collecting: errors + around)
    }

    // MARK: Unknown fields

    /// The `@type` of an `Any` mapping.
    private var typeURL: String? {
        guard let f = fields.first(where: { $0.key == "@type" }), case .scalar(let s) = f.node else { return nil }
        return s.string
    }

    /// The fields of the message(s) this mapping can be, judging by the fields its decoder has asked for so far,
    /// plus those; nil when no message in `ConfigFields` fits.
    package var knownFields: Set<String>? {
        let queried = used.union(mentioned)
        return ConfigFields.known(queried: queried, type: typeURL, httpFilters: value.httpFilters.fields)?.union(queried)
    }

    /// Errors for the fields of this mapping that its message does not have; none when the message is not
    /// known (then `finish()` still reports what is left over).
    package func unknownFieldErrors() -> [ConfigError] {
        guard let known = knownFields else { return [] }
        return fields.filter { !known.contains($0.key) }.map { unknownFieldError($0.key, line: $0.keyLine, known: known) }
    }

    /// "unknown field 'prefx'; did you mean 'prefix'?", suggesting a known field the mapping does not have.
    private func unknownFieldError(_ key: String, line: Int?, known: Set<String>) -> ConfigError {
        let present = Set(fields.map(\.key))
        var message = "unknown field '\(key)'"
        if let suggestion = ConfigFields.closest(to: key, among: known.subtracting(present)) {
            message += "; did you mean '\(suggestion)'?"
        }
        return ConfigError(path: childPath(key), line: line, message: message)
    }
}
