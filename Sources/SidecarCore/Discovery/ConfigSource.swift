/// A discovery file: `path_config_source` (or the older `path`), re-read when a file is moved into place.
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

/// Where a discovery service's resources come from (Envoy's `ConfigSource`): a file, the bootstrap's
/// aggregated discovery stream (`ads: {}`), or a stream of its own to a control plane (`api_config_source`, for
/// route configurations: RouteDiscoveryService).
public enum ConfigSource: Sendable, Hashable {
    case file(FileConfigSource)
    case ads
    /// `api_config_source` with `api_type` GRPC or DELTA_GRPC: the same fields as `ads_config`.
    case grpc(ADSConfig)

    public var file: FileConfigSource? {
        if case .file(let f) = self { return f }
        return nil
    }
}

/// `dynamic_resources.ads_config`: one gRPC stream to a control plane that carries every resource type
/// (state of the world, `api_type: GRPC`), to the static cluster `clusterName`.
public struct ADSConfig: Sendable, Hashable {
    public var clusterName: String
    /// `set_node_on_first_message_only`: the node goes on the stream's first request only.
    public var nodeOnFirstMessageOnly: Bool
    /// `api_type: DELTA_GRPC`: the incremental protocol (DeltaAggregatedResources) instead of state of the world.
    public var delta: Bool

    public init(clusterName: String, nodeOnFirstMessageOnly: Bool = false, delta: Bool = false) {
        self.clusterName = clusterName
        self.nodeOnFirstMessageOnly = nodeOnFirstMessageOnly
        self.delta = delta
    }
}

/// The bootstrap's `dynamic_resources`: clusters (CDS) and listeners (LDS) from a file or the ADS stream, and that
/// stream.
public struct DynamicResources: Sendable {
    /// `cds_config`.
    public var clusters: ConfigSource?
    /// `lds_config`.
    public var listeners: ConfigSource?
    public var ads: ADSConfig?
    /// The longest the first fetch of an ADS resource type holds readiness (`initial_fetch_timeout` of
    /// `cds_config`; Envoy's default 15 s). Zero: no limit.
    public var initialFetchTimeout: ProtoDuration

    public init(clusters: ConfigSource? = nil, listeners: ConfigSource? = nil, ads: ADSConfig? = nil,
                initialFetchTimeout: ProtoDuration = ProtoDuration(nanoseconds: 15_000_000_000)) {
        self.clusters = clusters
        self.listeners = listeners
        self.ads = ads
        self.initialFetchTimeout = initialFetchTimeout
    }
}

extension DynamicResources {
    package static func decode(_ value: ConfigValue) throws -> DynamicResources {
        let obj = try value.object()
        try obj.unsupported(["lds_resources_locator", "cds_resources_locator", "default_config_source"])
        var result = DynamicResources()
        if let v = obj.optional("ads_config") { result.ads = try ADSConfig.decode(v) }
        if let v = obj.optional("cds_config") {
            result.clusters = try ConfigSource.decode(v)
            if let t = try v.object().optional("initial_fetch_timeout") { result.initialFetchTimeout = try t.duration() }
        }
        if let v = obj.optional("lds_config") { result.listeners = try ConfigSource.decode(v) }
        try obj.finish()
        return result
    }
}

extension ADSConfig {
    package static func decode(_ value: ConfigValue) throws -> ADSConfig {
        let obj = try value.object()
        try obj.unsupported([
            "cluster_names", "refresh_delay", "request_timeout", "rate_limit_settings", "config_validators",
        ])
        let apiType = try obj.required("api_type")
        let delta: Bool
        switch try apiType.string() {
        case "GRPC": delta = false
        case "DELTA_GRPC": delta = true
        case let other: throw apiType.error("api_type must be GRPC or DELTA_GRPC, not '\(other)'")
        }
        if let v = obj.optional("transport_api_version"), try v.string() != "V3" {
            throw v.error("transport_api_version must be V3 (Envoy removed V2)")
        }
        let services = try obj.list("grpc_services")
        guard services.count == 1 else {
            throw value.error(at: "grpc_services", "ads_config needs exactly one grpc_services entry, found \(services.count)")
        }
        let service = try services[0].object()
        try service.unsupported(["google_grpc", "timeout", "initial_metadata", "retry_policy"])
        let envoy = try service.required("envoy_grpc").object()
        let cluster = try envoy.required("cluster_name").nonEmptyString()
        try envoy.unsupported(["authority", "retry_policy", "max_receive_message_length", "skip_envoy_headers"])
        try envoy.finish()
        try service.finish()
        let nodeOnce = try obj.optional("set_node_on_first_message_only")?.bool() ?? false
        try obj.finish()
        return ADSConfig(clusterName: cluster, nodeOnFirstMessageOnly: nodeOnce, delta: delta)
    }
}

extension ConfigSource {
    /// `streams`: `api_config_source` is taken (RDS); elsewhere it is refused by name.
    package static func decode(_ value: ConfigValue, streams: Bool = false) throws -> ConfigSource {
        let obj = try value.object()
        if let api = obj.optional("api_config_source") {
            guard streams else {
                throw api.error("api_config_source is taken for rds only by Pilotfish yet; use 'ads: {}' with "
                    + "dynamic_resources.ads_config, or path_config_source")
            }
            try obj.unsupported(["ads", "path_config_source", "path", "self", "authorities"])
            if let v = obj.optional("resource_api_version"), try v.string() != "V3" {
                throw v.error("resource_api_version must be V3 (Envoy removed V2)")
            }
            if let v = obj.optional("initial_fetch_timeout") { _ = try v.duration() }
            let config = try ADSConfig.decode(api)
            try obj.finish()
            return .grpc(config)
        }
        if obj.optional("ads") != nil {
            try obj.unsupported(["api_config_source", "self", "authorities"])
            if let v = obj.optional("resource_api_version"), try v.string() != "V3" {
                throw v.error("resource_api_version must be V3 (Envoy removed V2)")
            }
            if let v = obj.optional("initial_fetch_timeout") { _ = try v.duration() }
            guard let (_, ads) = try obj.oneOf(["path_config_source", "path", "ads"]) else { preconditionFailure() }
            try ads.object().finish()
            try obj.finish()
            return .ads
        }
        return .file(try FileConfigSource.decode(value))
    }
}

/// An HTTP connection manager's `rds`: its route configuration, by name, from a file or the ADS stream.
public struct RDSConfig: Sendable, Hashable {
    public var routeConfigName: String
    public var source: ConfigSource

    public init(routeConfigName: String, source: ConfigSource) {
        self.routeConfigName = routeConfigName
        self.source = source
    }

    package static func decode(_ value: ConfigValue) throws -> RDSConfig {
        let obj = try value.object()
        let name = try obj.required("route_config_name").nonEmptyString()
        let source = try ConfigSource.decode(try obj.required("config_source"), streams: true)
        try obj.finish()
        return RDSConfig(routeConfigName: name, source: source)
    }
}

/// A cluster's `eds_cluster_config`: its endpoints are the `ClusterLoadAssignment` named `serviceName`, in a file
/// or from the ADS stream.
public struct EDSClusterConfig: Sendable, Hashable {
    /// `service_name`, else the cluster's name.
    public var serviceName: String
    public var source: ConfigSource

    public init(serviceName: String, source: ConfigSource) {
        self.serviceName = serviceName
        self.source = source
    }
}

extension FileConfigSource {
    package static func decode(_ value: ConfigValue) throws -> FileConfigSource {
        let obj = try value.object()
        try obj.unsupported(["api_config_source", "self", "authorities"])
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
