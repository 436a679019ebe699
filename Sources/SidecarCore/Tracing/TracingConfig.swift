/// The connection manager's `tracing`: when a request is traced (Envoy's sampling percentages, applied to the
/// request id), what its spans carry, and the tracer (`provider`) that exports them.
public struct TracingConfig: Sendable {
    /// `client_sampling`: the share of requests with `x-client-trace-id` that are traced (default 100 %).
    public var clientSampling = FractionalPercent(numerator: 10_000, denominator: 10_000)
    /// `random_sampling`: the share of the other requests that are traced (default 100 %).
    public var randomSampling = FractionalPercent(numerator: 10_000, denominator: 10_000)
    /// `overall_sampling`: applied after the others: a request outside it is not traced (default 100 %).
    public var overallSampling = FractionalPercent(numerator: 10_000, denominator: 10_000)
    /// `max_path_tag_length`: `http.url` is cut to this many characters (default 256).
    public var maxPathTagLength = 256
    /// `custom_tags`, added to every span of the connection manager.
    public var customTags: [CustomTag] = []
    /// `spawn_upstream_span`: a child span per upstream request, as the router's `start_child_span` asks.
    public var spawnUpstreamSpan = false
    /// `provider`: nil traces (the request id still carries the decision) but exports nothing.
    public var provider: TracerConfig?

    public init() {}
}

/// A `custom_tags` entry: a tag whose value is a literal, an environment variable read at start-up, or a request
/// header.
public struct CustomTag: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        case literal(String)
        case environment(name: String, default: String?)
        case requestHeader(name: String, default: String?)
    }
    public var tag: String
    public var source: Source
}

/// `tracing.provider`: the tracer and where its spans go.
public enum TracerConfig: Sendable {
    case zipkin(ZipkinTracerConfig)
    case openTelemetry(OpenTelemetryTracerConfig)

    public var name: String {
        switch self {
        case .zipkin: "envoy.tracers.zipkin"
        case .openTelemetry: "envoy.tracers.opentelemetry"
        }
    }

    /// The cluster the spans are sent to.
    public var collectorCluster: String {
        switch self {
        case .zipkin(let z): z.collectorCluster
        case .openTelemetry(let o): o.transport.cluster
        }
    }
}

/// `envoy.config.trace.v3.ZipkinConfig`: B3 propagation, Zipkin JSON v2 spans POSTed to the collector.
public struct ZipkinTracerConfig: Sendable, Equatable {
    public var collectorCluster: String
    public var collectorEndpoint: String
    /// `collector_hostname`: the Host of the POST (default: the cluster's name).
    public var collectorHostname: String
    /// `trace_id_128bit`: new traces get 128-bit ids (default 64-bit).
    public var traceID128Bit = false
    /// `shared_span_context` (default true): a server span continues the caller's span id instead of starting
    /// a child.
    public var sharedSpanContext = true
    /// `trace_context_option: USE_B3_WITH_W3C_PROPAGATION`: also read `traceparent` when no B3 header came,
    /// and send `traceparent` beside the B3 headers.
    public var w3cPropagation = false
}

/// `envoy.config.trace.v3.OpenTelemetryConfig`: W3C propagation, OTLP export over gRPC or HTTP.
public struct OpenTelemetryTracerConfig: Sendable, Equatable {
    public enum Transport: Sendable, Equatable {
        /// `grpc_service.envoy_grpc`: `TraceService/Export` on the cluster; `timeout` per call.
        case grpc(cluster: String, authority: String?, timeout: ProtoDuration?)
        /// `http_service`: OTLP/HTTP (protobuf) POSTed to `path` on the cluster, with `headers`.
        case http(cluster: String, path: String, authority: String, timeout: ProtoDuration, headers: [(String, String)])

        public var cluster: String {
            switch self {
            case .grpc(let c, _, _): c
            case .http(let c, _, _, _, _): c
            }
        }

        public static func == (a: Transport, b: Transport) -> Bool {
            switch (a, b) {
            case let (.grpc(c1, a1, t1), .grpc(c2, a2, t2)): c1 == c2 && a1 == a2 && t1 == t2
            case let (.http(c1, p1, a1, t1, h1), .http(c2, p2, a2, t2, h2)):
                c1 == c2 && p1 == p2 && a1 == a2 && t1 == t2 && h1.elementsEqual(h2, by: { $0 == $1 })
            default: false
            }
        }
    }
    public var transport: Transport
    /// `service_name`: the `service.name` resource attribute (Envoy's default: `unknown_service:envoy`).
    public var serviceName = "unknown_service:envoy"
}

/// A route's `decorator`: the name of the spans of the requests it routes, and whether an egress request tells
/// the next hop (`x-envoy-decorator-operation`).
public struct RouteDecorator: Sendable, Equatable {
    public var operation: String
    public var propagate = true
}
