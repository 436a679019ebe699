extension Listener {
    package static let hcmType =
        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    package static let routerType = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    package static let tcpProxyType = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
    package static let originalDstType = "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
    package static let httpInspectorType = "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"
    package static let tlsInspectorType = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
    package static let originalSrcType = "type.googleapis.com/envoy.extensions.filters.listener.original_src.v3.OriginalSrc"

    package static func decode(_ value: ConfigValue) throws -> Listener {
        let obj = try value.object()
        try obj.unsupported([
            "socket_options",
            "filter_chain_matcher",
            "connection_balance_config", "reuse_port", "enable_reuse_port",
            "enable_mptcp", "additional_addresses", "udp_listener_config", "api_listener",
            "stat_prefix", "drain_type", "metadata", "max_connections_to_accept_per_socket_event",
            "tcp_fast_open_queue_length", "internal_listener", "listener_specifier",
        ])
        let name = try obj.optional("name")?.string() ?? "listener_\(value.path.split(separator: "[").last.map { String($0.dropLast()) } ?? "0")"
        let address = try SocketAddressConfig.decodeAddress(try obj.required("address"))
        let limit = try obj.optional("per_connection_buffer_limit_bytes")?.uint32() ?? 1_048_576
        let chainsValue = try obj.required("filter_chains")
        let chainValues = try chainsValue.array()
        var chains: [FilterChain] = []
        for (i, c) in chainValues.enumerated() {
            chains.append(try FilterChain.decode(c, index: i))
        }
        var defaultChain: FilterChain?
        if let d = obj.optional("default_filter_chain") {
            defaultChain = try FilterChain.decode(d, index: chains.count)
            if defaultChain?.match != FilterChainMatch() {
                throw d.error("default_filter_chain cannot have a filter_chain_match")
            }
        }
        if chains.isEmpty && defaultChain == nil {
            throw chainsValue.error("a listener needs at least one filter chain")
        }
        // Envoy refuses two chains with the same match: the second could never be chosen.
        for i in chains.indices {
            for j in chains.indices where j > i && chains[i].match == chains[j].match {
                throw chainValues[j].error("filter chain \(j) has the same filter_chain_match as filter chain \(i)")
            }
        }
        let transparent = try obj.optional("transparent")?.bool() ?? false
        let freebind = try obj.optional("freebind")?.bool() ?? false
        var originalDst = false
        var httpInspector = false
        var originalSourceMark: UInt32?
        var tlsInspector = false
        if let lf = obj.optional("listener_filters") {
            for item in try lf.array() {
                let f = try item.object()
                let name = try f.required("name").nonEmptyString()
                var type = ""
                if let t = f.optional("typed_config") {
                    let to = try t.object()
                    type = try to.required("@type").string()
                    if type == originalDstType { try to.unsupported(["local_redirect_address"]) }
                    if type == originalSrcType {
                        if let bp = to.optional("bind_port"), try bp.bool() {
                            throw bp.error("original_src bind_port: true is a valid Envoy value but is not supported by Pilotfish yet")
                        }
                        originalSourceMark = try to.optional("mark")?.uint32() ?? 0
                    }
                    try to.finish()
                }
                try f.unsupported(["filter_disabled", "config_discovery"])
                try f.finish()
                if type == originalDstType || (type.isEmpty && name == "envoy.filters.listener.original_dst") {
                    originalDst = true
                } else if type == httpInspectorType || (type.isEmpty && name == "envoy.filters.listener.http_inspector") {
                    httpInspector = true
                } else if type == tlsInspectorType || (type.isEmpty && name == "envoy.filters.listener.tls_inspector") {
                    tlsInspector = true
                } else if type == originalSrcType {
                    // (decoded above)
                } else {
                    throw item.error("listener filter '\(name)'\(type.isEmpty ? "" : " (\(type))") is not supported by Pilotfish yet; supported: envoy.filters.listener.original_dst, envoy.filters.listener.original_src, envoy.filters.listener.http_inspector, envoy.filters.listener.tls_inspector")
                }
            }
        }
        let usesAppProtocols = (chains + [defaultChain].compactMap { $0 }).contains { !$0.match.applicationProtocols.isEmpty }
        if usesAppProtocols && !httpInspector && !tlsInspector {
            throw chainsValue.error("filter_chain_match.application_protocols needs a listener filter that detects them; add envoy.filters.listener.http_inspector or tls_inspector")
        }
        let usesTLSMatch = chains.contains { !$0.match.serverNames.isEmpty || $0.match.transportProtocol == "tls" }
        if usesTLSMatch && !tlsInspector {
            throw chainsValue.error("filter_chain_match.server_names and transport_protocol: tls need envoy.filters.listener.tls_inspector")
        }
        var listener = Listener(
            name: name, address: address, filterChains: chains, defaultFilterChain: defaultChain,
            perConnectionBufferLimitBytes: Int(limit), transparent: transparent, freebind: freebind,
            originalDestination: originalDst, httpInspector: httpInspector)
        listener.tcpBacklogSize = try obj.optional("tcp_backlog_size").map { Int(try $0.int(min: 1, max: 65535)) }
        if let t = obj.optional("listener_filters_timeout") {
            let d = try t.duration()
            listener.listenerFiltersTimeout = d.isZero ? nil : d
        }
        listener.continueOnListenerFiltersTimeout = try obj.optional("continue_on_listener_filters_timeout")?.bool() ?? false
        listener.originalSourceMark = originalSourceMark
        listener.tlsInspector = tlsInspector
        listener.useOriginalDst = try obj.optional("use_original_dst")?.bool() ?? false
        listener.bindToPort = try obj.optional("bind_to_port")?.bool() ?? true
        listener.ignoreGlobalConnLimit = try obj.optional("ignore_global_conn_limit")?.bool() ?? false
        if let d = obj.optional("traffic_direction") { listener.trafficDirection = try d.enumValue(Listener.TrafficDirection.self) }
        listener.accessLogs = try AccessLogConfig.decodeList(obj.optional("access_log"))
        try obj.finish()
        return listener
    }
}

extension FilterChain {
    package static func decode(_ value: ConfigValue, index: Int) throws -> FilterChain {
        let chain = try value.object()
        try chain.unsupported(["transport_socket_connect_timeout", "metadata"])
        let name = try chain.optional("name")?.string() ?? "filter_chain_\(index)"
        let match = try chain.optional("filter_chain_match").map(FilterChainMatch.decode) ?? FilterChainMatch()
        let filtersValue = try chain.required("filters")
        let filters = try filtersValue.array()
        guard !filters.isEmpty else {
            throw filtersValue.error("a filter chain needs a terminal network filter: "
                + "envoy.filters.network.http_connection_manager or envoy.filters.network.tcp_proxy")
        }
        // Zero or more envoy.filters.network.rbac, then exactly one terminal filter, as Envoy requires the
        // terminal filter to be last.
        var rbac: [RBACFilterConfig] = []
        var limits: [ConnectionLimitConfig] = []
        var terminal: Listener.NetworkFilter?
        for (i, item) in filters.enumerated() {
            let isLast = i == filters.count - 1
            switch try decodeNetworkFilter(item) {
            case .rbac(let config, let name):
                if isLast {
                    throw item.error("non-terminal filter '\(name)' (envoy.filters.network.rbac) is the last filter "
                        + "in the chain; end it with envoy.filters.network.http_connection_manager or tcp_proxy")
                }
                rbac.append(config)
            case .connectionLimit(let config, let name):
                if isLast {
                    throw item.error("non-terminal filter '\(name)' (envoy.filters.network.connection_limit) is the last "
                        + "filter in the chain; end it with envoy.filters.network.http_connection_manager or tcp_proxy")
                }
                limits.append(config)
            case .terminal(let network, let name):
                if !isLast {
                    throw item.error("terminal filter '\(name)' must be the last filter in a network filter chain")
                }
                terminal = network
            }
        }
        guard let terminal else { fatalError("unreachable: the last filter is terminal or decoding threw") }
        var result = FilterChain(name: name, match: match, network: terminal, networkRBAC: rbac)
        result.connectionLimits = limits
        if let ts = chain.optional("transport_socket") {
            result.tls = try TLSContextConfig.decodeTransportSocket(ts, side: .downstream)
            if let tls = result.tls, case .httpConnectionManager = terminal, let other = tls.alpnProtocols.first(where: { !["h2", "http/1.1", "http/1.0"].contains($0) }) {
                throw ts.error(at: "typed_config.common_tls_context.alpn_protocols", "'\(other)' cannot be negotiated for an HTTP connection manager: it serves h2, http/1.1 and http/1.0")
            }
        }
        try chain.finish()
        return result
    }

    private enum DecodedNetworkFilter {
        case rbac(RBACFilterConfig, name: String)
        case connectionLimit(ConnectionLimitConfig, name: String)
        case terminal(Listener.NetworkFilter, name: String)
    }

    /// One entry of `filters`: Envoy picks the extension by `@type`; the name is free text, but it must not
    /// promise another `envoy.filters.network.*` filter.
    private static func decodeNetworkFilter(_ item: ConfigValue) throws -> DecodedNetworkFilter {
        let filter = try item.object()
        let filterName = try filter.required("name").string()
        let typedObj = try filter.required("typed_config").object()
        let type = try typedObj.required("@type")
        let decoded: DecodedNetworkFilter
        let names: [String]
        switch try type.string() {
        case Listener.hcmType:
            let hcm = try HTTPConnectionManagerConfig.decode(typedObj)
            decoded = .terminal(.httpConnectionManager(hcm), name: filterName)
            names = ["envoy.filters.network.http_connection_manager", "envoy.http_connection_manager"]
        case Listener.tcpProxyType:
            decoded = .terminal(.tcpProxy(try TCPProxyConfig.decode(typedObj)), name: filterName)
            names = ["envoy.filters.network.tcp_proxy", "envoy.tcp_proxy"]
        case RBACFilterConfig.networkType:
            decoded = .rbac(try RBACFilterConfig.decodeNetwork(typedObj), name: filterName)
            names = ["envoy.filters.network.rbac"]
        case ConnectionLimitConfig.type:
            try typedObj.unsupported(["runtime_enabled"])
            let prefix = try typedObj.required("stat_prefix").nonEmptyString()
            let max = Int(try typedObj.required("max_connections").int(min: 1, max: Int64(Int32.max)))
            let delay = try typedObj.optional("delay")?.duration()
            try typedObj.finish()
            decoded = .connectionLimit(
                ConnectionLimitConfig(statPrefix: prefix, maxConnections: max, delay: delay.flatMap { $0.isZero ? nil : $0 }),
                name: filterName)
            names = ["envoy.filters.network.connection_limit"]
        default:
            throw type.error("network filter type '\(try type.string())' is not supported; supported: "
                + "\(Listener.hcmType), \(Listener.tcpProxyType), \(RBACFilterConfig.networkType), \(ConnectionLimitConfig.type)")
        }
        if !names.contains(filterName) && filterName.hasPrefix("envoy.filters.network.") {
            throw filter.value.error(
                "network filter '\(filterName)' does not match its typed_config \(try type.string())")
        }
        try filter.unsupported(["config_discovery"])
        try filter.finish()
        return decoded
    }
}

extension FilterChainMatch {
    package static func decode(_ value: ConfigValue) throws -> FilterChainMatch {
        let obj = try value.object()
        try obj.unsupported(["direct_source_prefix_ranges", "source_type", "source_ports", "address_suffix", "suffix_len"])
        var m = FilterChainMatch()
        if let p = obj.optional("destination_port") { m.destinationPort = Int(try p.int(min: 1, max: 65535)) }
        m.prefixRanges = try obj.optional("prefix_ranges").map(decodeRanges) ?? []
        m.sourcePrefixRanges = try obj.optional("source_prefix_ranges").map(decodeRanges) ?? []
        if let t = obj.optional("transport_protocol") {
            let s = try t.string()
            guard s == "raw_buffer" || s == "tls" else {
                throw t.error("transport_protocol '\(s)' is not supported; use raw_buffer or tls")
            }
            m.transportProtocol = s
        }
        if let names = obj.optional("server_names") {
            m.serverNames = try names.array().map { try $0.nonEmptyString().lowercased() }
        }
        if let a = obj.optional("application_protocols") {
            m.applicationProtocols = try a.array().map { try $0.nonEmptyString() }
        }
        try obj.finish()
        return m
    }

    /// `envoy.config.core.v3.CidrRange` list: {address_prefix, prefix_len}.
    package static func decodeRanges(_ value: ConfigValue) throws -> [CIDRRange] {
        try value.array().map { item in
            let o = try item.object()
            let address = try o.required("address_prefix").nonEmptyString()
            let len = try o.optional("prefix_len")?.int(min: 0, max: 128)
            try o.finish()
            guard let range = CIDRRange(address: address, prefixLength: len.map(Int.init)) else {
                throw item.error("'\(address)/\(len.map(String.init) ?? "")' is not a valid CIDR range")
            }
            return range
        }
    }
}

extension TCPProxyConfig {
    package static func decode(_ obj: ConfigObject) throws -> TCPProxyConfig {
        try obj.unsupported([
            "weighted_clusters", "on_demand", "metadata_match", "downstream_idle_timeout", "upstream_idle_timeout",
            "max_connect_attempts", "hash_policy", "tunneling_config", "max_downstream_connection_duration",
            "access_log_flush_interval", "flush_access_log_on_connected", "access_log_options", "backoff_options",
            "proxy_protocol_tlvs", "max_early_data_bytes",
        ])
        let statPrefix = try obj.required("stat_prefix").nonEmptyString()
        let cluster = try obj.required("cluster").nonEmptyString()
        var idle: ProtoDuration? = .seconds(3600)
        if let v = obj.optional("idle_timeout") {
            let d = try v.duration()
            idle = d.isZero ? nil : d
        }
        let accessLogs = try AccessLogConfig.decodeList(obj.optional("access_log"))
        try obj.finish()
        return TCPProxyConfig(statPrefix: statPrefix, cluster: cluster, idleTimeout: idle, accessLogs: accessLogs)
    }
}

extension HTTPConnectionManagerConfig {
    package static func decode(_ obj: ConfigObject) throws -> HTTPConnectionManagerConfig {
        try obj.unsupported([
            "scoped_routes", "http3_protocol_options",
            "access_log_options",
            "forward_client_cert_details", "set_current_client_cert_details", "proxy_100_continue",
            "request_id_extension",
            "local_reply_config", "strip_matching_host_port", "strip_any_host_port",
            "drain_timeout", "delayed_close_timeout", "internal_address_config",
            "server_header_transformation", "scheme_header_transformation", "max_request_headers_count",
            "stream_error_on_invalid_http_message", "original_ip_detection_extensions", "early_header_mutation_extensions",
            "strip_trailing_host_dot", "proxy_status_config", "typed_header_validation_config", "append_x_forwarded_port",
            "append_local_overload", "add_proxy_protocol_connection_state", "http_services",
            "represent_ipv4_remote_address_as_ipv4_mapped_ipv6", "internal_only_headers",
        ])
        let statPrefix = try obj.required("stat_prefix").nonEmptyString()
        let codec = try obj.optional("codec_type")
        var codecType = CodecType.AUTO
        if let codec {
            let s = try codec.string()
            if s == "HTTP3" {
                throw codec.error("codec_type \(s) is a valid Envoy value but is not supported by Pilotfish yet")
            }
            codecType = try codec.enumValue(CodecType.self)
        }
        // `route_config` inline, or `rds`: a route configuration from a file, read when the server starts and
        // again when a new one is moved into place (empty until then).
        var route = RouteConfiguration(name: "", virtualHosts: [], headers: HeaderMutations())
        var rds: RDSConfig?
        if let (key, value) = try obj.oneOf(["route_config", "rds"]) {
            if key == "route_config" {
                route = try RouteConfiguration.decode(value)
            } else {
                let r = try RDSConfig.decode(value)
                route.name = r.routeConfigName
                rds = r
            }
        }
        let filters = try obj.value.httpFilters.decodeChain(try obj.required("http_filters"))
        var acceptHTTP10 = false
        var defaultHost: String?
        if let hpo = try obj.optional("http_protocol_options")?.object() {
            try hpo.unsupported([
                "allow_absolute_url", "header_key_format", "enable_trailers", "allow_chunked_length",
                "override_stream_error_on_invalid_http_message", "send_fully_qualified_url", "use_balsa_parser",
                "allow_custom_methods", "ignore_http_11_upgrade",
            ])
            acceptHTTP10 = try hpo.optional("accept_http_10")?.bool() ?? false
            defaultHost = try hpo.optional("default_host_for_http_10")?.headerValueText()
            try hpo.finish()
        }
        let http2 = try obj.optional("http2_protocol_options").map { try HTTP2ProtocolOptions.decode($0) } ?? HTTP2ProtocolOptions()
        var upgrades: [String: Bool] = [:]
        for item in try obj.list("upgrade_configs") {
            let u = try item.object()
            try u.unsupported(["filters"])
            let typeValue = try u.required("upgrade_type")
            let type = try typeValue.nonEmptyString().lowercased()
            upgrades[type] = try u.optional("enabled")?.bool() ?? true
            try u.finish()
        }
        let serverName = try obj.optional("server_name")?.headerValueText() ?? "envoy"
        var headers = ConnectionManagerHeaders()
        headers.useRemoteAddress = try obj.optional("use_remote_address")?.bool() ?? false
        headers.xffNumTrustedHops = Int(try obj.optional("xff_num_trusted_hops")?.uint32() ?? 0)
        headers.skipXFFAppend = try obj.optional("skip_xff_append")?.bool() ?? false
        headers.generateRequestID = try obj.optional("generate_request_id")?.bool() ?? true
        headers.preserveExternalRequestID = try obj.optional("preserve_external_request_id")?.bool() ?? false
        headers.alwaysSetRequestIDInResponse = try obj.optional("always_set_request_id_in_response")?.bool() ?? false
        let addUserAgent = try obj.optional("add_user_agent")?.bool() ?? false
        headers.via = try obj.optional("via").map { v in
            _ = try v.nonEmptyString()
            return try v.headerValueText()
        }
        var common = DownstreamHTTPProtocolOptions()
        if let c = try obj.optional("common_http_protocol_options")?.object() {
            try c.unsupported([
                "headers_with_underscores_action", "max_stream_duration",
                "max_response_headers_kb", "max_connection_duration_jitter",
            ])
            if let v = c.optional("idle_timeout") {
                let d = try v.duration()
                common.idleTimeout = d.isZero ? nil : d
            }
            if let v = c.optional("max_connection_duration") {
                let d = try v.duration()
                common.maxConnectionDuration = d.isZero ? nil : d
            }
            if let v = c.optional("max_requests_per_connection") {
                let n = try v.uint32Int()
                common.maxRequestsPerConnection = n == 0 ? nil : n
            }
            if let v = c.optional("max_headers_count") {
                // Envoy's bound (protoc-gen-validate: UInt32Value gte 1).
                common.maxHeadersCount = Int(try v.int(min: 1, max: Int64(UInt32.max)))
            }
            try c.finish()
        }
        var requestTimeout: ProtoDuration?
        if let v = obj.optional("request_timeout") {
            let d = try v.duration()
            requestTimeout = d.isZero ? nil : d
        }
        // Zero (the default) disables it, as in Envoy.
        let headersTimeout = try obj.optional("request_headers_timeout")?.duration()
        let maxKB = try obj.optional("max_request_headers_kb")?.int(min: 1, max: 8192) ?? 60
        // Zero disables it, as in Envoy.
        let streamIdleTimeout = try obj.optional("stream_idle_timeout")?.duration() ?? .seconds(300)
        let accessLogs = try AccessLogConfig.decodeList(obj.optional("access_log"))
        let tracing = try obj.optional("tracing").map(TracingConfig.decode)
        var paths = PathNormalization()
        paths.normalizePath = try obj.optional("normalize_path")?.bool() ?? false
        paths.mergeSlashes = try obj.optional("merge_slashes")?.bool() ?? false
        if let v = obj.optional("path_with_escaped_slashes_action") {
            let actions: [String: PathNormalization.EscapedSlashes] = [
                "IMPLEMENTATION_SPECIFIC_DEFAULT": .keep, "KEEP_UNCHANGED": .keep, "REJECT_REQUEST": .reject,
                "UNESCAPE_AND_REDIRECT": .redirect, "UNESCAPE_AND_FORWARD": .forward,
            ]
            let text = try v.string()
            guard let action = actions[text] else {
                throw v.error("unknown value '\(text)'; expected one of: IMPLEMENTATION_SPECIFIC_DEFAULT, KEEP_UNCHANGED, REJECT_REQUEST, UNESCAPE_AND_REDIRECT, UNESCAPE_AND_FORWARD")
            }
            paths.escapedSlashes = action
        }
        try obj.finish()
        var config = HTTPConnectionManagerConfig(
            statPrefix: statPrefix, codecType: codecType, routeConfig: route, httpFilters: filters,
            acceptHTTP10: acceptHTTP10, defaultHostForHTTP10: defaultHost, serverName: serverName,
            useRemoteAddress: headers.useRemoteAddress, requestTimeout: requestTimeout, maxRequestHeadersKB: Int(maxKB),
            streamIdleTimeout: streamIdleTimeout)
        config.requestHeaders = headers
        config.rds = rds
        config.requestHeadersTimeout = headersTimeout.flatMap { $0.isZero ? nil : $0 }
        config.http2Options = http2
        config.upgradeConfigs = upgrades
        config.addUserAgent = addUserAgent
        config.commonProtocolOptions = common
        config.accessLogs = accessLogs
        config.tracing = tracing
        config.pathNormalization = paths
        return config
    }
}
