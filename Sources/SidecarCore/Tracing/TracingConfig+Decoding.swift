extension TracingConfig {
    package static let zipkinType = "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig"
    package static let openTelemetryType = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"

    /// The connection manager's `tracing` (`HttpConnectionManager.Tracing`).
    package static func decode(_ value: ConfigValue) throws -> TracingConfig {
        let obj = try value.object()
        try obj.unsupported(["operation", "upstream_operation"])
        var config = TracingConfig()
        if let v = obj.optional("client_sampling") { config.clientSampling = try percent(v) }
        if let v = obj.optional("random_sampling") { config.randomSampling = try percent(v) }
        if let v = obj.optional("overall_sampling") { config.overallSampling = try percent(v) }
        if let v = obj.optional("verbose"), try v.bool() {
            throw v.error("verbose: true (timing annotations on spans) is not supported by Pilotfish yet")
        }
        if let v = obj.optional("max_path_tag_length") { config.maxPathTagLength = try v.uint32Int() }
        config.customTags = try obj.list("custom_tags").map(CustomTag.decode)
        config.spawnUpstreamSpan = try obj.optional("spawn_upstream_span")?.bool() ?? false
        config.provider = try obj.optional("provider").map(TracerConfig.decode)
        try obj.finish()
        return config
    }

    /// A `Percent` as Envoy keeps it: numerator over TEN_THOUSAND, rounded.
    private static func percent(_ v: ConfigValue) throws -> FractionalPercent {
        let p = try v.percent()
        return FractionalPercent(numerator: UInt64((p * 100).rounded()), denominator: 10_000)
    }
}

extension CustomTag {
    package static func decode(_ value: ConfigValue) throws -> CustomTag {
        let obj = try value.object()
        try obj.unsupported(["metadata", "value"])
        let tag = try obj.required("tag").nonEmptyString()
        guard let (key, v) = try obj.oneOf(["literal", "environment", "request_header"]) else {
            fatalError("unreachable: oneOf is required")
        }
        let source: Source
        let o = try v.object()
        switch key {
        case "literal":
            source = .literal(try o.required("value").string())
        case "environment":
            source = .environment(name: try o.required("name").nonEmptyString(),
                                  default: try o.optional("default_value")?.string())
        default:
            source = .requestHeader(name: try o.required("name").headerNameText().lowercased(),
                                    default: try o.optional("default_value")?.string())
        }
        try o.finish()
        try obj.finish()
        return CustomTag(tag: tag, source: source)
    }
}

extension TracerConfig {
    /// `tracing.provider` (`envoy.config.trace.v3.Tracing.Http`): the Zipkin and OpenTelemetry tracers.
    package static func decode(_ value: ConfigValue) throws -> TracerConfig {
        let obj = try value.object()
        let name = try obj.required("name").nonEmptyString()
        let typed = try obj.required("typed_config")
        let to = try typed.object()
        let typeValue = try to.required("@type")
        let type = try typeValue.string()
        let config: TracerConfig
        switch type {
        case TracingConfig.zipkinType: config = .zipkin(try ZipkinTracerConfig.decode(to))
        case TracingConfig.openTelemetryType: config = .openTelemetry(try OpenTelemetryTracerConfig.decode(to))
        default:
            throw typeValue.error(
                "tracer \(name) (\(type)) is not supported by Pilotfish yet (supported: envoy.tracers.zipkin, "
                    + "envoy.tracers.opentelemetry)")
        }
        try to.finish()
        try obj.finish()
        return config
    }
}

extension ZipkinTracerConfig {
    package static func decode(_ obj: ConfigObject) throws -> ZipkinTracerConfig {
        try obj.unsupported(["collector_service"])
        let cluster = try obj.required("collector_cluster").nonEmptyString()
        let endpointValue = try obj.required("collector_endpoint")
        let endpoint = try endpointValue.requestTargetText()
        guard endpoint.hasPrefix("/") else { throw endpointValue.error("collector_endpoint must be a path starting with '/'") }
        var config = ZipkinTracerConfig(
            collectorCluster: cluster, collectorEndpoint: endpoint,
            collectorHostname: try obj.optional("collector_hostname")?.headerValueText() ?? cluster)
        if config.collectorHostname.isEmpty { config.collectorHostname = cluster }
        config.traceID128Bit = try obj.optional("trace_id_128bit")?.bool() ?? false
        config.sharedSpanContext = try obj.optional("shared_span_context")?.bool() ?? true
        if let v = obj.optional("collector_endpoint_version") {
            let s = try v.string()
            switch s {
            case "HTTP_JSON", "DEPRECATED_AND_UNAVAILABLE_DO_NOT_USE": break
            case "HTTP_PROTO", "GRPC":
                throw v.error("collector_endpoint_version \(s) is a valid Envoy value but is not supported by "
                    + "Pilotfish yet (supported: HTTP_JSON)")
            default: throw v.error("unknown collector_endpoint_version '\(s)' (expected HTTP_JSON, HTTP_PROTO or GRPC)")
            }
        }
        if let v = obj.optional("split_spans_for_request"), try v.bool() {
            throw v.error("split_spans_for_request: true is not supported by Pilotfish yet")
        }
        if let v = obj.optional("trace_context_option") {
            switch try v.string() {
            case "USE_B3": config.w3cPropagation = false
            case "USE_B3_WITH_W3C_PROPAGATION": config.w3cPropagation = true
            case let s: throw v.error("unknown trace_context_option '\(s)' (expected USE_B3 or USE_B3_WITH_W3C_PROPAGATION)")
            }
        }
        return config
    }
}

extension OpenTelemetryTracerConfig {
    package static func decode(_ obj: ConfigObject) throws -> OpenTelemetryTracerConfig {
        try obj.unsupported(["resource_detectors", "sampler", "max_cache_size"])
        guard let (key, v) = try obj.oneOf(["grpc_service", "http_service"]) else {
            fatalError("unreachable: oneOf is required")
        }
        let transport: Transport
        if key == "grpc_service" {
            let g = try v.object()
            try g.unsupported(["google_grpc", "initial_metadata", "retry_policy"])
            let timeout = try g.optional("timeout")?.duration()
            let eg = try g.required("envoy_grpc").object()
            try eg.unsupported(["retry_policy", "max_receive_message_length", "skip_envoy_headers"])
            let cluster = try eg.required("cluster_name").nonEmptyString()
            let authority = try eg.optional("authority")?.headerValueText()
            try eg.finish()
            try g.finish()
            transport = .grpc(cluster: cluster, authority: authority?.isEmpty == true ? nil : authority,
                              timeout: timeout?.isZero == true ? nil : timeout)
        } else {
            let h = try v.object()
            let uriObj = try h.required("http_uri").object()
            let uriValue = try uriObj.required("uri")
            let uri = try uriValue.nonEmptyString()
            let cluster = try uriObj.required("cluster").nonEmptyString()
            let timeout = try uriObj.required("timeout").duration()
            try uriObj.finish()
            // Envoy takes the path (and the Host) from the URI: http://host[:port]/path.
            var rest = Substring(uri)
            if let r = rest.range(of: "://") { rest = rest[r.upperBound...] }
            let slash = rest.firstIndex(of: "/") ?? rest.endIndex
            let authority = String(rest[..<slash])
            let path = slash == rest.endIndex ? "/" : String(rest[slash...])
            _ = try uriValue.requestTargetText()
            var headers: [(String, String)] = []
            for a in try h.list("request_headers_to_add") {
                let ao = try a.object()
                let hv = try ao.required("header").object()
                let name = try hv.required("key").headerNameText()
                let value = try hv.optional("value")?.headerValueText() ?? ""
                try hv.finish()
                try ao.unsupported(["append", "append_action", "keep_empty_value"])
                try ao.finish()
                headers.append((name, value))
            }
            try h.finish()
            transport = .http(cluster: cluster, path: path, authority: authority, timeout: timeout, headers: headers)
        }
        var config = OpenTelemetryTracerConfig(transport: transport)
        if let s = try obj.optional("service_name")?.string(), !s.isEmpty { config.serviceName = s }
        return config
    }
}

extension RouteDecorator {
    package static func decode(_ value: ConfigValue) throws -> RouteDecorator {
        let obj = try value.object()
        let operation = try obj.required("operation").nonEmptyString()
        _ = try obj.required("operation").headerValueText()
        let propagate = try obj.optional("propagate")?.bool() ?? true
        try obj.finish()
        return RouteDecorator(operation: operation, propagate: propagate)
    }
}
