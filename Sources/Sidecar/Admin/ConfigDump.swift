import Foundation
import Yams

/// `/config_dump`: the loaded bootstrap as JSON, secrets redacted as Envoy does (see `ConfigDump+Redaction.swift`).
/// Every field in it is one Pilotfish runs, because anything else was rejected at load.
enum ConfigDump {
    static func json(_ source: String?) -> String {
        guard let source, let node = try? Yams.compose(yaml: source) else { return "{\"configs\":[]}\n" }
        let bootstrap = ["@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": redactSecrets(toJSON(node))] as [String: Any]
        let doc: [String: Any] = ["configs": [bootstrap]]
        guard let data = try? JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys]) else {
            return "{\"configs\":[]}\n"
        }
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    private static func toJSON(_ node: Node) -> Any {
        switch node {
        case .scalar(let s):
            if s.style == .plain {
                if let i = Int(s.string) { return i }
                if let d = Double(s.string), s.string.contains(".") { return d }
                if s.string == "true" { return true }
                if s.string == "false" { return false }
                if s.string == "null" || s.string == "~" { return NSNull() }
            }
            return s.string
        case .mapping(let m):
            var out: [String: Any] = [:]
            for (k, v) in m { out[k.string ?? ""] = toJSON(v) }
            return out
        case .sequence(let seq):
            return seq.map(toJSON)
        case .alias:
            return NSNull()
        }
    }
}
