import Foundation
import Yams

extension Bootstrap {
    /// The lists whose elements stand on their own: after an error in one, decoding goes on without it, so that
    /// one load reports the errors of all of them (see `ConfigSession`).
    package static let recoverableLists: Set<String> = ["listeners", "clusters", "virtual_hosts", "routes"]

    /// Loads a bootstrap from YAML or JSON text, whose HTTP filters are those of `httpFilters`. On failure the
    /// `ConfigError` is the first problem by line and carries every other one found in `others`.
    package static func load(text: String, httpFilters: HTTPFilterCatalog) throws -> Bootstrap {
        guard let root = try ConfigDocument.parse(text) else {
            throw ConfigError(path: "", line: nil, message: "the config is empty")
        }
        return try ConfigSession.decode(root, recovering: recoverableLists, httpFilters: httpFilters, Self.decode)
    }

    package static func load(file: String, httpFilters: HTTPFilterCatalog) throws -> Bootstrap {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ConfigError(path: "", line: nil, message: "cannot read config file '\(file)'")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(path: "", line: nil, message: "config file '\(file)' is not UTF-8")
        }
        return try load(text: text, httpFilters: httpFilters)
    }

    package static func decode(_ value: ConfigValue) throws -> Bootstrap {
        let obj = try value.object()
        try obj.unsupported([
            "cluster_manager", "stats_sinks", "stats_config",
            "tracing", "watchdog", "watchdogs", "hds_config", "flags_path",
            "bootstrap_extensions", "fatal_actions", "default_socket_interface", "inline_headers",
        ])
        var admin: Admin?
        if let a = obj.optional("admin") {
            let ao = try a.object()
            try ao.unsupported(["profile_path", "socket_options"])
            admin = Admin(address: try SocketAddressConfig.decodeAddress(try ao.required("address")))
            admin?.ignoreGlobalConnLimit = try ao.optional("ignore_global_conn_limit")?.bool() ?? false
            admin?.accessLogs = try AccessLogConfig.decodeList(ao.optional("access_log"))
            try ao.finish()
        }
        var listeners: [Listener] = []
        var clusters: [Cluster] = []
        if let sr = obj.optional("static_resources") {
            let so = try sr.object()
            try so.unsupported(["secrets"])
            listeners = try so.list("listeners").map(Listener.decode)
            clusters = try so.list("clusters").map(Cluster.decode)
            try so.finish()
        }
        var nodeID: String?, nodeCluster: String?
        if let n = obj.optional("node") {
            let no = try n.object()
            try no.unsupported([
                "metadata", "dynamic_parameters", "locality", "user_agent_name", "user_agent_version",
                "user_agent_build_version", "extensions", "client_features", "listening_addresses",
            ])
            // Both can reach headers (x-envoy-downstream-service-node, the health check filter's cluster header).
            nodeID = try no.optional("id")?.headerValueText()
            nodeCluster = try no.optional("cluster")?.headerValueText()
            try no.finish()
        }
        let dynamicResources = try obj.optional("dynamic_resources").map(DynamicResources.decode)
        let layeredRuntime = try obj.optional("layered_runtime").map(LayeredRuntimeConfig.decode)
        let overloadManager = try obj.optional("overload_manager").map(OverloadManagerConfig.decode)
        var statsFlushInterval = ProtoDuration.seconds(5)
        if let v = obj.optional("stats_flush_interval") {
            statsFlushInterval = try v.duration()
            // Envoy's bounds: at least 1 ms, under 300 s.
            guard statsFlushInterval >= .milliseconds(1), statsFlushInterval < .seconds(300) else {
                throw v.error("stats_flush_interval must be at least 0.001s and less than 300s")
            }
        }
        try obj.finish()
        var bootstrap = Bootstrap(admin: admin, listeners: listeners, clusters: clusters)
        bootstrap.nodeID = nodeID
        bootstrap.nodeCluster = nodeCluster
        bootstrap.layeredRuntime = layeredRuntime
        bootstrap.statsFlushInterval = statsFlushInterval
        bootstrap.overloadManager = overloadManager
        bootstrap.dynamicResources = dynamicResources
        try bootstrap.validate(root: obj)
        return bootstrap
    }

    /// `ads: {}` needs `ads_config`, whose cluster must be a static one with a fixed address (the stream cannot
    /// depend on what it delivers), in plaintext so far.
    /// A route configuration streamed by `api_config_source` comes from a static cluster with an address.
    private func validateRouteStreams(_ doc: ConfigValue) throws {
        for (i, l) in listeners.enumerated() {
            for (c, chain) in (l.filterChains + [l.defaultFilterChain].compactMap { $0 }).enumerated() {
                guard case .httpConnectionManager(let hcm) = chain.network, case .grpc(let api)? = hcm.rds?.source
                else { continue }
                let at = "static_resources.listeners[\(i)].filter_chains[\(c)]"
                try Self.checkStreamCluster(api.clusterName, in: clusters) { doc.error(at: at, $0) }
            }
        }
        for (at, tls) in tlsContexts {
            for ref in tls.secretReferences {
                guard case .grpc(let api) = ref.source else { continue }
                try Self.checkStreamCluster(api.clusterName, in: clusters) { doc.error(at: at, $0) }
            }
        }
    }

    /// Every TLS context of the static resources, with where it is (filter chains' transport sockets, then
    /// clusters').
    package var tlsContexts: [(at: String, config: TLSContextConfig)] {
        var out: [(String, TLSContextConfig)] = []
        for (i, l) in listeners.enumerated() {
            for (c, chain) in (l.filterChains + [l.defaultFilterChain].compactMap { $0 }).enumerated() {
                if let tls = chain.tls { out.append(("static_resources.listeners[\(i)].filter_chains[\(c)].transport_socket", tls)) }
            }
        }
        for (i, c) in clusters.enumerated() {
            if let tls = c.tls { out.append(("static_resources.clusters[\(i)].transport_socket", tls)) }
        }
        return out
    }

    /// The cluster a discovery stream (`api_config_source`) goes to: a static cluster with an endpoint.
    package static func checkStreamCluster(_ name: String, in clusters: [Cluster], _ error: (String) -> Error) throws {
        guard let cluster = clusters.first(where: { $0.name == name }) else {
            throw error("api_config_source names unknown static cluster '\(name)' (a discovery stream goes to a "
                + "static cluster)")
        }
        guard cluster.eds == nil, cluster.endpoints.first != nil else {
            throw error("the discovery cluster '\(name)' needs an endpoint in its load_assignment")
        }
    }

    private func validateADS(_ doc: ConfigValue) throws {
        var user: String?
        if dynamicResources?.clusters == .ads { user = "dynamic_resources.cds_config" }
        if dynamicResources?.listeners == .ads { user = "dynamic_resources.lds_config" }
        for (i, l) in listeners.enumerated() where user == nil {
            for (c, chain) in l.filterChains.enumerated() {
                if case .httpConnectionManager(let hcm) = chain.network, hcm.rds?.source == .ads {
                    user = "static_resources.listeners[\(i)].filter_chains[\(c)]"
                }
            }
        }
        for (i, c) in clusters.enumerated() where user == nil && c.eds?.source == .ads {
            user = "static_resources.clusters[\(i)].eds_cluster_config"
        }
        for (at, tls) in tlsContexts where user == nil && tls.secretReferences.contains(where: { $0.source == .ads }) {
            user = at
        }
        guard let ads = dynamicResources?.ads else {
            if let user { throw doc.error(at: user, "'ads: {}' needs dynamic_resources.ads_config") }
            return
        }
        let at = "dynamic_resources.ads_config.grpc_services[0].envoy_grpc.cluster_name"
        guard let cluster = clusters.first(where: { $0.name == ads.clusterName }) else {
            throw doc.error(at: at, "unknown static cluster '\(ads.clusterName)' (the ADS cluster must be a static cluster)")
        }
        guard cluster.eds == nil, cluster.endpoints.first != nil else {
            throw doc.error(at: at, "the ADS cluster '\(ads.clusterName)' needs an endpoint in its load_assignment")
        }
        if let tls = cluster.tls {
            // TLS to the control plane goes through the gRPC transport's TLS, which takes certificates and a CA.
            let refused: String?
            if case .sds = tls.certificates {
                refused = "takes its client certificate from SDS"
            } else if case .inline(let certs) = tls.certificates, certs.count > 1 {
                refused = "has more than one tls_certificates entry"
            } else if case .sds? = tls.validation {
                refused = "takes its validation context from SDS"
            } else if case .inline(let v)? = tls.validation, !v.matchSubjectAltNames.isEmpty {
                refused = "matches the server's subject alt names"
            } else if tls.params != TLSParams() {
                refused = "sets tls_params"
            } else if !tls.alpnProtocols.isEmpty {
                refused = "sets alpn_protocols (gRPC offers h2 itself)"
            } else {
                refused = nil
            }
            if let refused {
                throw doc.error(at: at, "the ADS cluster '\(ads.clusterName)' \(refused): not supported by Pilotfish for "
                    + "the connection to the control plane yet (certificate and key files or inline PEM, and "
                    + "validation_context.trusted_ca, are)")
            }
        }
        if !cluster.httpProtocolOptions.http2 {
            throw doc.error(at: at, "the ADS cluster '\(ads.clusterName)' must speak HTTP/2 (gRPC): set "
                + "typed_extension_protocol_options envoy.extensions.upstreams.http.v3.HttpProtocolOptions "
                + "explicit_http_config.http2_protocol_options, as Envoy requires")
        }
    }

    /// Cross-references: names are unique and every route names a cluster that exists.
    private func validate(root: ConfigObject) throws {
        let doc = root.value
        // As Envoy: a discovery subscription identifies its proxy, so the node must say who it is.
        if (nodeID ?? "").isEmpty || (nodeCluster ?? "").isEmpty {
            var subscriber: (at: String, what: String)?
            if dynamicResources?.clusters != nil { subscriber = ("dynamic_resources.cds_config", "CDS") }
            if dynamicResources?.listeners != nil { subscriber = ("dynamic_resources.lds_config", "LDS") }
            if dynamicResources?.ads != nil { subscriber = ("dynamic_resources.ads_config", "ADS") }
            for (i, l) in listeners.enumerated() where subscriber == nil {
                for (c, chain) in l.filterChains.enumerated() {
                    if case .httpConnectionManager(let hcm) = chain.network, hcm.rds != nil {
                        subscriber = ("static_resources.listeners[\(i)].filter_chains[\(c)]", "RDS")
                        break
                    }
                }
            }
            if let subscriber {
                throw doc.error(at: subscriber.at, "\(subscriber.what) needs node 'id' and 'cluster' (as in Envoy); set "
                    + "both in 'node'")
            }
        }
        var clusterNames = Set<String>()
        for (i, c) in clusters.enumerated() where !clusterNames.insert(c.name).inserted {
            throw doc.error(at: "static_resources.clusters[\(i)].name", "duplicate cluster name '\(c.name)'")
        }
        try validateADS(doc)
        try validateRouteStreams(doc)
        // A cluster left out after an error of its own (see `ConfigSession.decode`) still counts for references,
        // so that its error is not followed by one for every route to it; if it has no name to count, references
        // are not checked at all.
        var checkReferences = true
        if let session = doc.session, !session.excluded.isEmpty,
           case .sequence(let raw)? = doc.child("static_resources")?.child("clusters")?.node {
            for (i, node) in raw.enumerated() where session.isExcluded("static_resources.clusters[\(i)]") {
                if let name = try? ConfigValue(node: node, path: "").child("name")?.string() {
                    clusterNames.insert(name)
                } else {
                    checkReferences = false
                }
            }
        }
        var listenerNames = Set<String>()
        var addresses = Set<SocketAddressConfig>()
        for (i, l) in listeners.enumerated() {
            if !listenerNames.insert(l.name).inserted {
                throw doc.error(at: "static_resources.listeners[\(i)].name", "duplicate listener name '\(l.name)'")
            }
            // Port 0 asks the kernel for a free port: any number of listeners may.
            if l.address.port != 0 && !addresses.insert(l.address).inserted && l.bindToPort {
                throw doc.error(at: "static_resources.listeners[\(i)].address",
                                "listener '\(l.name)' reuses address \(l.address)")
            }
            let filter = "static_resources.listeners[\(i)].filter_chains[0].filters[0].typed_config"
            guard checkReferences else { continue }
            let http2Clusters = Set(clusters.filter { $0.httpProtocolOptions.http2 }.map(\.name))
            switch l.network {
            case .httpConnectionManager(let hcm):
                // `validate_clusters: false` leaves it to request time (503, NC), for clusters CDS brings later.
                if hcm.rds == nil, hcm.routeConfig.validateClusters ?? true {
                    try hcm.routeConfig.checkClusters(clusterNames, in: doc.locate(filter + ".route_config"))
                }
                if let tracer = hcm.tracing?.provider {
                    let at = filter + ".tracing.provider.typed_config"
                    let cluster = tracer.collectorCluster
                    if !clusterNames.contains(cluster) {
                        throw doc.error(at: at, "\(tracer.name) refers to unknown cluster '\(cluster)'")
                    }
                    if case .openTelemetry(let o) = tracer, case .grpc = o.transport {
                        if !http2Clusters.contains(cluster) {
                            throw doc.error(at: at, "the OpenTelemetry tracer's gRPC collector cluster '\(cluster)' "
                                + "must be HTTP/2 (typed_extension_protocol_options: explicit_http_config: "
                                + "http2_protocol_options: {})")
                        }
                    } else if http2Clusters.contains(cluster) {
                        throw doc.error(at: at, "\(tracer.name) sends HTTP/1.1 to its collector; cluster '\(cluster)' "
                            + "is HTTP/2; Pilotfish's Zipkin client speaks HTTP/1.1 only")
                    }
                }
            case .tcpProxy(let tcp):
                if !clusterNames.contains(tcp.cluster) {
                    throw doc.error(at: filter + ".cluster", "tcp_proxy refers to unknown cluster '\(tcp.cluster)'")
                }
            }
        }
    }
}

extension SocketAddressConfig {
    /// Decodes an `envoy.config.core.v3.Address`; only `socket_address` over TCP is supported.
    package static func decodeAddress(_ value: ConfigValue) throws -> SocketAddressConfig {
        let obj = try value.object()
        try obj.unsupported(["pipe", "envoy_internal_address"])
        let sa = try obj.required("socket_address")
        try obj.finish()
        return try decodeSocketAddress(sa, requireIP: true)
    }

    package static func decodeSocketAddress(_ value: ConfigValue, requireIP: Bool) throws -> SocketAddressConfig {
        let so = try value.object()
        try so.unsupported(["named_port", "resolver_name", "ipv4_compat", "network_namespace_filepath"])
        if let p = so.optional("protocol"), try p.string() != "TCP" {
            throw p.error("only protocol TCP is supported")
        }
        let addrValue = try so.required("address")
        let address = try addrValue.nonEmptyString()
        if requireIP && !IPAddressText.isIP(address) {
            throw addrValue.error("'\(address)' is not an IP address")
        }
        let port = Int(try so.required("port_value").int(min: 0, max: 65535))
        try so.finish()
        return SocketAddressConfig(address: address, port: port)
    }
}

package enum IPAddressText {
    package static func isIP(_ s: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, s, &v4) == 1 || inet_pton(AF_INET6, s, &v6) == 1
    }
}
