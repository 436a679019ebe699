import Foundation
import Yams

/// A CDS file: Envoy's `DiscoveryResponse` in YAML or JSON, with `version_info` and the clusters as `resources`,
/// each an `Any` of type `envoy.config.cluster.v3.Cluster`. Its clusters are decoded as static ones are, so a
/// field Pilotfish does not run is refused here, naming the resource and line.
public struct ClusterDiscoveryFile: Sendable {
    public static let clusterType = "type.googleapis.com/envoy.config.cluster.v3.Cluster"

    public var versionInfo: String
    public var clusters: [Cluster]
    /// Each cluster as written (without its `@type`), as YAML text: what /config_dump shows.
    public var documents: [String]

    /// Reads and decodes the file at `path`; a `ConfigError` names the file, the field and the line.
    public static func load(path: String) throws -> ClusterDiscoveryFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(path: "", line: nil, message: "cannot read CDS file '\(path)'")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(path: "", line: nil, message: "CDS file '\(path)' is not UTF-8")
        }
        return try decode(text: text)
    }

    public static func decode(text: String) throws -> ClusterDiscoveryFile {
        guard let root = try ConfigDocument.parse(text) else {
            throw ConfigError(path: "", line: nil, message: "the CDS file is empty")
        }
        return try ConfigSession.decode(root, recovering: ["resources"], httpFilters: .none, decode)
    }

    static func decode(_ value: ConfigValue) throws -> ClusterDiscoveryFile {
        let obj = try value.object()
        let version = try obj.optional("version_info")?.string() ?? ""
        if let t = obj.optional("type_url"), try t.string() != clusterType {
            throw t.error("a CDS file holds \(clusterType) resources, not '\(try t.string())'")
        }
        var clusters: [Cluster] = []
        var documents: [String] = []
        var names: [String: Int] = [:]
        for (i, resource) in try obj.list("resources").enumerated() {
            let (stripped, document) = try withoutType(resource)
            let cluster = try Cluster.decode(stripped)
            if let first = names[cluster.name] {
                throw resource.error(at: "name", "duplicate cluster name '\(cluster.name)' (also resources[\(first)])")
            }
            names[cluster.name] = i
            clusters.append(cluster)
            documents.append((try? Yams.serialize(node: document)) ?? "")
        }
        try obj.finish()
        return ClusterDiscoveryFile(versionInfo: version, clusters: clusters, documents: documents)
    }

    /// The resource's mapping without its `@type`, which must name a cluster.
    private static func withoutType(_ resource: ConfigValue) throws -> (ConfigValue, Node) {
        guard case .mapping(let mapping) = resource.node else { _ = try resource.object(); preconditionFailure() }
        guard let type = mapping.first(where: { $0.key.string == "@type" }) else {
            throw resource.error("missing required field '@type' (\(clusterType))")
        }
        guard type.value.string == clusterType else {
            throw resource.descendant(type.value, path: resource.path + ".@type")
                .error("a CDS resource must be a \(clusterType), not '\(type.value.string ?? "")'")
        }
        let kept = mapping.filter { $0.key.string != "@type" }.map { ($0.key, $0.value) }
        let node = Node.mapping(Node.Mapping(kept, mapping.tag, mapping.style, mapping.mark))
        return (resource.descendant(node, path: resource.path), node)
    }
}
