import Foundation
import Yams

/// A Kubernetes object as read from YAML or JSON: maps keep their keys' order, so an injected manifest differs from
/// its input only where injection changed it. Numbers keep their text (`1.0` stays `1.0`).
public indirect enum KubeValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([KubeValue])
    case object(KubeObject)

    public var object: KubeObject? {
        if case .object(let o) = self { return o }
        return nil
    }
    public var array: [KubeValue]? {
        if case .array(let a) = self { return a }
        return nil
    }
    public var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }
    /// An integer, whether written as a number or not.
    public var int: Int? {
        if case .number(let n) = self { return Int(n) }
        return nil
    }

    public static func int(_ n: Int) -> KubeValue { .number(String(n)) }
}

/// A map with its keys in order.
public struct KubeObject: Equatable, Sendable {
    public private(set) var pairs: [(key: String, value: KubeValue)]

    public init(_ pairs: [(String, KubeValue)] = []) { self.pairs = pairs.map { (key: $0.0, value: $0.1) } }

    public var keys: [String] { pairs.map(\.key) }

    /// Setting nil removes the key; setting a new key appends it.
    public subscript(key: String) -> KubeValue? {
        get { pairs.first { $0.key == key }?.value }
        set {
            let i = pairs.firstIndex { $0.key == key }
            switch (i, newValue) {
            case (let i?, let v?): pairs[i].value = v
            case (let i?, nil): pairs.remove(at: i)
            case (nil, let v?): pairs.append((key: key, value: v))
            case (nil, nil): break
            }
        }
    }

    public static func == (a: KubeObject, b: KubeObject) -> Bool {
        a.pairs.count == b.pairs.count && zip(a.pairs, b.pairs).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}

// MARK: Reading

/// Input that is not a Kubernetes manifest, with where.
public struct ManifestError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension KubeValue {
    /// Every document of a YAML (or JSON: JSON is YAML) stream; empty documents are skipped.
    public static func documents(_ text: String) throws -> [KubeValue] {
        do {
            // Parser.nextRoot throws on bad input (compose_all's sequence would end quietly at the error).
            let parser = try Parser(yaml: text)
            var documents: [KubeValue] = []
            while let node = try parser.nextRoot() { documents.append(try KubeValue(node)) }
            return documents
        } catch let e as ManifestError {
            throw e
        } catch {
            throw ManifestError("not YAML or JSON: \(error)")
        }
    }

    init(_ node: Node) throws {
        switch node {
        case .scalar(let s):
            if node.null != nil {
                self = .null
            } else if let b = node.bool {
                self = .bool(b)
            } else if node.int != nil || node.float != nil {
                self = .number(s.string)
            } else {
                self = .string(s.string)
            }
        case .sequence(let seq):
            self = .array(try seq.map { try KubeValue($0) })
        case .mapping(let map):
            var o = KubeObject()
            for (k, v) in map {
                guard let key = k.string else {
                    throw ManifestError("line \(k.mark?.line ?? 0): a map key must be a string")
                }
                o[key] = try KubeValue(v)
            }
            self = .object(o)
        case .alias:
            throw ManifestError("line \(node.mark?.line ?? 0): YAML aliases are not supported in manifests")
        }
    }
}

// MARK: Writing

extension KubeValue {
    /// YAML, as `kubectl` would read it back: strings that would read as something else are quoted.
    public static func yaml(_ documents: [KubeValue]) throws -> String {
        try Yams.serialize(nodes: documents.map(\.node), indent: 2, width: -1, sortKeys: false)
    }

    var node: Node {
        switch self {
        case .null: return Node("null", Tag(.null))
        case .bool(let b): return Node(b ? "true" : "false", Tag(.bool))
        case .number(let n): return Node(n, Tag(n.contains(".") || n.contains("e") ? .float : .int))
        case .string(let s):
            // Strings with a line break read best as a literal block; a string that would read back as something
            // else (`"true"`, `"8080"`, `""`, `"null"`) is quoted.
            if s.contains("\n") { return Node(s, Tag(.str), .literal) }
            let plain = Node(s)
            let ambiguous = s.isEmpty || plain.null != nil || plain.bool != nil || plain.int != nil || plain.float != nil
            return Node(s, Tag(.str), ambiguous ? .doubleQuoted : .any)
        case .array(let a): return Node(a.map(\.node))
        case .object(let o): return Node(o.pairs.map { (Node($0.key), $0.value.node) })
        }
    }

    /// Compact JSON with the keys in order.
    public var json: String {
        var out = ""
        writeJSON(into: &out)
        return out
    }

    func writeJSON(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n
        case .string(let s): Self.writeJSONString(s, into: &out)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.writeJSON(into: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, p) in o.pairs.enumerated() {
                if i > 0 { out += "," }
                Self.writeJSONString(p.key, into: &out)
                out += ":"
                p.value.writeJSON(into: &out)
            }
            out += "}"
        }
    }

    static func writeJSONString(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }
}
