import Foundation
import SidecarCore

/// Every config message Pilotfish decodes, with its fields (`ConfigFields`, the HTTP filters' included), as JSON:
/// what scripts/gen-xds-protos reads to write the protobuf subset the xDS client decodes.
public enum ConfigFieldsDump {
    public static func json() -> String {
        let messages = ConfigFields.messages + HTTPFilterRegistry.catalog.fields
        let rows: [[String: Any]] = messages.map { m in
            var row: [String: Any] = ["name": m.name, "fields": m.fields.sorted()]
            if let type = m.type { row["type"] = type }
            return row
        }
        let data = try! JSONSerialization.data(withJSONObject: rows, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}
