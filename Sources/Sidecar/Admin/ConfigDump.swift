import Foundation
import Yams

/// `/config_dump`: the loaded bootstrap as JSON, secrets redacted as Envoy does (see `ConfigDump+Redaction.swift`).
/// Every field in it is one Pilotfish runs, because anything else was rejected at load.
enum ConfigDump {
    /// `startTime`: when the static clusters were loaded; `clusters`: the CDS file's state, when there is one.
    static func json(_ source: String?, startTime: Date = Date(), clusters: ClusterDiscovery.State? = nil) -> String {
        guard let source, let node = try? Yams.compose(yaml: source) else { return "{\"configs\":[]}\n" }
        let root = redactSecrets(toJSON(node))
        let bootstrap = ["@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": root] as [String: Any]
        let doc: [String: Any] = ["configs": [bootstrap, clustersDump(root, startTime: startTime, clusters)]]
        guard let data = try? JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys]) else {
            return "{\"configs\":[]}\n"
        }
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    private static let clusterType = "type.googleapis.com/envoy.config.cluster.v3.Cluster"

    /// Envoy's `ClustersConfigDump`: the static clusters, and the CDS file's with its `version_info`. When the
    /// last file was refused, each dynamic cluster carries the refusal as `error_state` (what was wrong, where,
    /// and when), and the clusters shown are those still serving.
    private static func clustersDump(_ bootstrap: Any, startTime: Date, _ state: ClusterDiscovery.State?) -> [String: Any] {
        func typed(_ cluster: Any) -> Any {
            guard var c = cluster as? [String: Any] else { return cluster }
            c["@type"] = clusterType
            return c
        }
        let statics = ((bootstrap as? [String: Any])?["static_resources"] as? [String: Any])?["clusters"] as? [Any] ?? []
        var dump: [String: Any] = [
            "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "static_clusters": statics.map { ["cluster": typed($0), "last_updated": timestamp(startTime)] },
        ]
        guard let state else { return dump }
        dump["version_info"] = state.versionInfo
        dump["dynamic_active_clusters"] = state.documents.map { text -> [String: Any] in
            let cluster = (try? Yams.compose(yaml: text)).flatMap { $0 }.map { redactSecrets(toJSON($0)) } ?? [:]
            var entry: [String: Any] = ["version_info": state.versionInfo, "cluster": typed(cluster)]
            if let updated = state.lastUpdated { entry["last_updated"] = timestamp(updated) }
            if let error = state.lastError {
                var failure: [String: Any] = ["details": error.message, "last_update_attempt": timestamp(error.at)]
                if let v = error.versionInfo { failure["version_info"] = v }
                entry["error_state"] = failure
            }
            return entry
        }
        return dump
    }

    /// Protobuf's JSON form of a Timestamp: UTC, milliseconds.
    private static func timestamp(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
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
