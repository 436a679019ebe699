/// Where a discovery service's resources come from (Envoy's `ConfigSource`). Pilotfish reads them from a file so
/// far: `path_config_source` (or the older `path`), re-read when a file is moved into place.
public struct FileConfigSource: Sendable, Hashable {
    /// The file holding a `DiscoveryResponse` (`version_info`, `resources`), YAML or JSON.
    public var path: String
    /// `watched_directory.path`: any file moved into this directory triggers a re-read (a Kubernetes ConfigMap
    /// swaps its `..data` link there). Without it, the file is re-read when a file is moved onto `path`.
    public var watchedDirectory: String?

    public init(path: String, watchedDirectory: String? = nil) {
        self.path = path
        self.watchedDirectory = watchedDirectory
    }
}

/// The bootstrap's `dynamic_resources`: for now, clusters (CDS) from a file.
public struct DynamicResources: Sendable {
    /// `cds_config`.
    public var clusters: FileConfigSource?

    public init(clusters: FileConfigSource? = nil) {
        self.clusters = clusters
    }
}

extension DynamicResources {
    package static func decode(_ value: ConfigValue) throws -> DynamicResources {
        let obj = try value.object()
        try obj.unsupported([
            "lds_config", "lds_resources_locator", "cds_resources_locator", "ads_config", "default_config_source",
        ])
        let clusters = try obj.optional("cds_config").map(FileConfigSource.decode)
        try obj.finish()
        return DynamicResources(clusters: clusters)
    }
}

extension FileConfigSource {
    package static func decode(_ value: ConfigValue) throws -> FileConfigSource {
        let obj = try value.object()
        try obj.unsupported(["api_config_source", "ads", "self", "authorities"])
        if let v = obj.optional("resource_api_version"), try v.string() != "V3" {
            throw v.error("resource_api_version must be V3 (Envoy removed V2)")
        }
        // Envoy's file subscriptions deliver at once; the timeout only matters to a control plane, so it is read
        // and checked, and has nothing to wait for.
        if let v = obj.optional("initial_fetch_timeout") { _ = try v.duration() }
        guard let (key, source) = try obj.oneOf(["path_config_source", "path"]) else {
            preconditionFailure("oneOf is required")
        }
        var result: FileConfigSource
        if key == "path" {
            result = FileConfigSource(path: try source.nonEmptyString())
        } else {
            let so = try source.object()
            result = FileConfigSource(path: try so.required("path").nonEmptyString())
            if let wd = so.optional("watched_directory") {
                let wo = try wd.object()
                result.watchedDirectory = try wo.required("path").nonEmptyString()
                try wo.finish()
            }
            try so.finish()
        }
        try obj.finish()
        return result
    }
}

/// An HTTP connection manager's `rds`: its route configuration, by name, from a file.
public struct RDSConfig: Sendable, Hashable {
    public var routeConfigName: String
    public var source: FileConfigSource

    public init(routeConfigName: String, source: FileConfigSource) {
        self.routeConfigName = routeConfigName
        self.source = source
    }

    package static func decode(_ value: ConfigValue) throws -> RDSConfig {
        let obj = try value.object()
        let name = try obj.required("route_config_name").nonEmptyString()
        let source = try FileConfigSource.decode(try obj.required("config_source"))
        try obj.finish()
        return RDSConfig(routeConfigName: name, source: source)
    }
}

/// A cluster's `eds_cluster_config`: its endpoints are the `ClusterLoadAssignment` named `serviceName` in a file.
public struct EDSClusterConfig: Sendable, Hashable {
    /// `service_name`, else the cluster's name.
    public var serviceName: String
    public var source: FileConfigSource

    public init(serviceName: String, source: FileConfigSource) {
        self.serviceName = serviceName
        self.source = source
    }
}
