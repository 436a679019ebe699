import Foundation
import Yams

/// A discovery file: Envoy's `DiscoveryResponse` in YAML or JSON, with `version_info` and `resources`, each an
/// `Any` of one type. Resources are decoded as the same messages are in a bootstrap, so a field Pilotfish does not
/// run is refused here, naming the resource, the field and the line; every resource's errors are reported together.
public struct DiscoveryFile<Resource: Sendable>: Sendable {
    public var versionInfo: String
    public var resources: [Resource]
    /// Each resource as written (without its `@type`), as YAML text: what /config_dump shows.
    public var documents: [String]
    /// Delta xDS: each resource's own version, in the order of `resources` (what /config_dump shows as its
    /// `version_info`, as Envoy does); nil for files and state-of-the-world responses.
    public var resourceVersions: [String]? = nil

    public init(versionInfo: String, resources: [Resource], documents: [String]) {
        self.versionInfo = versionInfo
        self.resources = resources
        self.documents = documents
    }

    /// `what`: the service, for messages ("CDS"); `typeURL`: its resources' type; `name`: a resource's name,
    /// which must be unique.
    package static func load(path: String, what: String, typeURL: String, httpFilters: HTTPFilterCatalog = .none,
                             decode: (ConfigValue) throws -> Resource, name: (Resource) -> String) throws -> Self {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(path: "", line: nil, message: "cannot read \(what) file '\(path)'")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(path: "", line: nil, message: "\(what) file '\(path)' is not UTF-8")
        }
        return try Self.decode(text: text, what: what, typeURL: typeURL, httpFilters: httpFilters, decode: decode,
                               name: name)
    }

    package static func decode(text: String, what: String, typeURL: String, httpFilters: HTTPFilterCatalog = .none,
                               decode: (ConfigValue) throws -> Resource, name: (Resource) -> String) throws -> Self {
        guard let root = try ConfigDocument.parse(text) else {
            throw ConfigError(path: "", line: nil, message: "the \(what) file is empty")
        }
        return try Self.decode(root: root, what: what, typeURL: typeURL, httpFilters: httpFilters, decode: decode,
                               name: name)
    }

    /// `root` parsed already; `documents: false` leaves `documents` empty (the caller has them in another form).
    package static func decode(root: Node, what: String, typeURL: String, httpFilters: HTTPFilterCatalog = .none,
                               documents keepDocuments: Bool = true, decode: (ConfigValue) throws -> Resource,
                               name: (Resource) -> String) throws -> Self {
        try ConfigSession.decode(root, recovering: ["resources"], httpFilters: httpFilters) { value in
            let obj = try value.object()
            let version = try obj.optional("version_info")?.string() ?? ""
            if let t = obj.optional("type_url"), try t.string() != typeURL {
                throw t.error("a \(what) file holds \(typeURL) resources, not '\(try t.string())'")
            }
            var resources: [Resource] = []
            var documents: [String] = []
            var names: [String: Int] = [:]
            for (i, item) in try obj.list("resources").enumerated() {
                let (stripped, document) = try withoutType(item, typeURL: typeURL, what: what)
                let resource = try decode(stripped)
                if let first = names[name(resource)] {
                    throw item.error(at: "name", "duplicate name '\(name(resource))' (also resources[\(first)])")
                }
                names[name(resource)] = i
                resources.append(resource)
                if keepDocuments { documents.append((try? Yams.serialize(node: document)) ?? "") }
            }
            try obj.finish()
            return DiscoveryFile(versionInfo: version, resources: resources, documents: documents)
        }
    }

    /// The resource's mapping without its `@type`, which must be `typeURL`.
    private static func withoutType(_ resource: ConfigValue, typeURL: String, what: String) throws
        -> (ConfigValue, Node)
    {
        guard case .mapping(let mapping) = resource.node else { _ = try resource.object(); preconditionFailure() }
        guard let type = mapping.first(where: { $0.key.string == "@type" }) else {
            throw resource.error("missing required field '@type' (\(typeURL))")
        }
        guard type.value.string == typeURL else {
            throw resource.descendant(type.value, path: resource.path + ".@type")
                .error("a \(what) resource must be a \(typeURL), not '\(type.value.string ?? "")'")
        }
        let kept = mapping.filter { $0.key.string != "@type" }.map { ($0.key, $0.value) }
        let node = Node.mapping(Node.Mapping(kept, mapping.tag, mapping.style, mapping.mark))
        return (resource.descendant(node, path: resource.path), node)
    }
}

/// The resource types discovery files hold.
public enum DiscoveryResources {
    public static let cluster = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    public static let routeConfiguration = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    public static let clusterLoadAssignment = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
    public static let listener = "type.googleapis.com/envoy.config.listener.v3.Listener"
    public static let secret = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

    /// An LDS file's listeners; their connection managers' filters are those of `httpFilters`.
    package static func listeners(path: String, httpFilters: HTTPFilterCatalog) throws -> DiscoveryFile<Listener> {
        try .load(path: path, what: "LDS", typeURL: listener, httpFilters: httpFilters, decode: Listener.decode,
                  name: \.name)
    }

    /// An EDS file's load assignments.
    public static func endpoints(path: String) throws -> DiscoveryFile<ClusterLoadAssignment> {
        try .load(path: path, what: "EDS", typeURL: clusterLoadAssignment, decode: ClusterLoadAssignment.decode,
                  name: \.clusterName)
    }

    /// A CDS file's clusters.
    public static func clusters(path: String) throws -> DiscoveryFile<Cluster> {
        try .load(path: path, what: "CDS", typeURL: cluster, decode: Cluster.decode, name: \.name)
    }

    /// An RDS file's route configurations; their per-route filter configs are those of `httpFilters`.
    package static func routes(path: String, httpFilters: HTTPFilterCatalog) throws
        -> DiscoveryFile<RouteConfiguration>
    {
        try .load(path: path, what: "RDS", typeURL: routeConfiguration, httpFilters: httpFilters,
                  decode: RouteConfiguration.decode, name: \.name)
    }
}
