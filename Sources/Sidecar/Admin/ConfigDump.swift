import Foundation
import SidecarCore
import Yams

/// `/config_dump`: the loaded bootstrap as JSON, secrets redacted as Envoy does (see `ConfigDump+Redaction.swift`).
/// Every field in it is one Pilotfish runs, because anything else was rejected at load.
enum ConfigDump {
    /// `startTime`: when the static resources were loaded; `dynamic`: the discovery files, when there are any.
    /// `endpoints`: the EDS files' assignments, for `?include_eds`.
    /// `secrets`: the secrets from control planes, delivered and awaited, when some TLS context names one.
    static func json(_ source: String?, startTime: Date = Date(), dynamic: DynamicConfig? = nil,
                     endpoints: [(cluster: String, accepted: EndpointDiscovery.Accepted,
                                  refusal: DiscoverySubscription<ClusterLoadAssignment>.Refusal?)]? = nil,
                     secrets: (active: [(name: String, entry: SecretDiscovery.Entry)], warming: [String])? = nil)
        -> String
    {
        guard let source, let node = try? Yams.compose(yaml: source) else { return "{\"configs\":[]}\n" }
        let root = redactSecrets(toJSON(node))
        let bootstrap = ["@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump", "bootstrap": root] as [String: Any]
        var configs: [Any] = [bootstrap, clustersDump(root, startTime: startTime, dynamic?.clusters?.current,
                                                      warming: dynamic?.warmingClusters ?? [])]
        configs.append(listenersDump(root, startTime: startTime, dynamic))
        if let routes = dynamic?.routes, !routes.isEmpty { configs.append(routesDump(routes)) }
        if let endpoints { configs.append(endpointsDump(endpoints)) }
        if let secrets { configs.append(secretsDump(secrets, startTime: startTime)) }
        let doc: [String: Any] = ["configs": configs]
        guard let data = try? JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys]) else {
            return "{\"configs\":[]}\n"
        }
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    private static let clusterType = DiscoveryResources.cluster

    private static func typed(_ resource: Any, _ type: String) -> Any {
        guard var r = resource as? [String: Any] else { return resource }
        r["@type"] = type
        return r
    }

    private static func document(_ text: String) -> Any {
        (try? Yams.compose(yaml: XDSResourceDecoding.expandedDocument(text))).flatMap { $0 }
            .map { redactSecrets(toJSON($0)) } ?? [String: Any]()
    }

    /// `error_state`: why the last file was refused (what was wrong, where, and when).
    private static func errorState(_ refusal: DiscoverySubscription<some Sendable>.Refusal) -> [String: Any] {
        var failure: [String: Any] = ["details": refusal.message, "last_update_attempt": timestamp(refusal.at)]
        if let v = refusal.versionInfo { failure["version_info"] = v }
        return failure
    }

    /// Envoy's `EndpointsConfigDump` (`?include_eds`): each EDS cluster's assignment as its file gave it last.
    private static func endpointsDump(
        _ endpoints: [(cluster: String, accepted: EndpointDiscovery.Accepted,
                       refusal: DiscoverySubscription<ClusterLoadAssignment>.Refusal?)]
    ) -> [String: Any] {
        let dynamic = endpoints.map { _, accepted, refusal -> [String: Any] in
            var entry: [String: Any] = [
                "version_info": accepted.versionInfo,
                "endpoint_config": typed(document(accepted.document), DiscoveryResources.clusterLoadAssignment),
            ]
            if let at = accepted.at { entry["last_updated"] = timestamp(at) }
            if let refusal { entry["error_state"] = errorState(refusal) }
            return entry
        }
        return ["@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump", "dynamic_endpoint_configs": dynamic]
    }

    /// Envoy's `SecretsConfigDump`: the secrets from control planes, those delivered (`dynamic_active_secrets`, as
    /// delivered, the private key redacted) and those still awaited (`dynamic_warming_secrets`, by name).
    private static func secretsDump(_ secrets: (active: [(name: String, entry: SecretDiscovery.Entry)], warming: [String]),
                                    startTime: Date) -> [String: Any]
    {
        let active = secrets.active.map { name, entry -> [String: Any] in
            ["name": name, "version_info": entry.versionInfo, "last_updated": timestamp(entry.updated),
             "secret": document(entry.document)]
        }
        // As Envoy shows a secret it waits for.
        let warming = secrets.warming.map { name -> [String: Any] in
            ["name": name, "version_info": "uninitialized", "last_updated": timestamp(startTime),
             "secret": ["@type": DiscoveryResources.secret, "name": name]]
        }
        return ["@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump", "dynamic_active_secrets": active,
                "dynamic_warming_secrets": warming]
    }

    /// Envoy's `ListenersConfigDump`: the static listeners, and LDS's by name, each with the state it serves
    /// (`active_state`: the version that last changed it), the one it waits to serve (`warming_state`: its routes
    /// have not arrived), and the last refusal as `error_state`.
    private static func listenersDump(_ bootstrap: Any, startTime: Date, _ dynamic: DynamicConfig?) -> [String: Any] {
        let type = DiscoveryResources.listener
        let statics = ((bootstrap as? [String: Any])?["static_resources"] as? [String: Any])?["listeners"] as? [Any] ?? []
        var dump: [String: Any] = [
            "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "static_listeners": statics.map { ["listener": typed($0, type), "last_updated": timestamp(startTime)] },
        ]
        guard let subscription = dynamic?.listeners, let dynamic else { return dump }
        let state = subscription.current
        dump["version_info"] = state.versionInfo
        let (active, warming) = dynamic.listenerStates()
        var entries: [String: [String: Any]] = [:]
        for l in active {
            entries[l.listener.name, default: ["name": l.listener.name]]["active_state"] = [
                "version_info": l.versionInfo, "listener": typed(document(l.revision), type),
                "last_updated": timestamp(l.updated),
            ] as [String: Any]
        }
        for w in warming {
            entries[w.listener.name, default: ["name": w.listener.name]]["warming_state"] = [
                "version_info": state.versionInfo, "listener": typed(document(w.document), type),
            ] as [String: Any]
        }
        if let refusal = state.lastError {
            for name in entries.keys { entries[name]!["error_state"] = errorState(refusal) }
        }
        dump["dynamic_listeners"] = entries.keys.sorted().map { entries[$0]! }
        return dump
    }

    /// Envoy's `RoutesConfigDump`: each RDS file's route configuration with its `version_info`, and the last
    /// refusal as `error_state`.
    private static func routesDump(_ routes: [RDSConfig: DiscoverySubscription<RouteConfiguration>]) -> [String: Any] {
        let dynamic = routes.sorted { $0.key.routeConfigName < $1.key.routeConfigName }.compactMap {
            (_, subscription) -> [String: Any]? in
            let state = subscription.current
            guard let text = state.documents.first else { return nil }
            var entry: [String: Any] = [
                "version_info": state.resourceVersions?.first ?? state.versionInfo,
                "route_config": typed(document(text), DiscoveryResources.routeConfiguration),
            ]
            if let updated = state.lastUpdated { entry["last_updated"] = timestamp(updated) }
            if let refusal = state.lastError { entry["error_state"] = errorState(refusal) }
            return entry
        }
        return ["@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump", "dynamic_route_configs": dynamic]
    }

    /// Envoy's `ClustersConfigDump`: the static clusters, and the CDS file's with its `version_info`. When the
    /// last file was refused, each dynamic cluster carries the refusal as `error_state`, and the clusters shown
    /// are those still serving. Clusters named in `warming` (waiting for secrets) are `dynamic_warming_clusters`.
    private static func clustersDump(_ bootstrap: Any, startTime: Date, _ state: DiscoverySubscription<Cluster>.State?,
                                     warming: Set<String>) -> [String: Any]
    {
        func typed(_ cluster: Any) -> Any { Self.typed(cluster, clusterType) }
        let statics = ((bootstrap as? [String: Any])?["static_resources"] as? [String: Any])?["clusters"] as? [Any] ?? []
        var dump: [String: Any] = [
            "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "static_clusters": statics.map { ["cluster": typed($0), "last_updated": timestamp(startTime)] },
        ]
        guard let state else { return dump }
        dump["version_info"] = state.versionInfo
        var active: [Any] = [], waiting: [Any] = []
        for (i, text) in state.documents.enumerated() {
            // Delta xDS: the resource's own version, as Envoy shows it.
            let version = state.resourceVersions.map { $0[i] } ?? state.versionInfo
            var entry: [String: Any] = ["version_info": version, "cluster": typed(document(text))]
            if let updated = state.lastUpdated { entry["last_updated"] = timestamp(updated) }
            if let refusal = state.lastError { entry["error_state"] = errorState(refusal) }
            if state.resources.indices.contains(i), warming.contains(state.resources[i].name) {
                waiting.append(entry)
            } else {
                active.append(entry)
            }
        }
        dump["dynamic_active_clusters"] = active
        if !waiting.isEmpty { dump["dynamic_warming_clusters"] = waiting }
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
