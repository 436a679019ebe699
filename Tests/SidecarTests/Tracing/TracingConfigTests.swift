import Testing

@testable import Sidecar
@testable import SidecarCore

/// The connection manager's `tracing`, route `decorator` and the router's `start_child_span`: what loads and
/// what is refused, with the field named.
@Suite struct TracingConfigTests {
    static let zipkin = #"{provider: {name: envoy.tracers.zipkin, typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig, collector_cluster: zipkin, collector_endpoint: /api/v2/spans, collector_endpoint_version: HTTP_JSON}}}"#

    static func otel(_ service: String) -> String {
        #"{provider: {name: envoy.tracers.opentelemetry, typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig, "#
            + service + "}}}"
    }

    static let h2 = #", typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {"@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: {http2_protocol_options: {}}}}"#

    /// The test config with `tracing`, and clusters `backend` and `zipkin`, or `otel` (HTTP/2 when `http2`).
    static func yaml(_ tracing: String, routes: [String] = [ProxyConfig.catchAll], http2: Bool = false) -> String {
        var text = ProxyConfig.yaml(routes: routes, clusters: [("backend", 1), ("zipkin", 2)],
                                    hcmExtra: ["tracing: \(tracing)"])
        text += "  - {name: otel, type: STATIC, load_assignment: {cluster_name: otel, endpoints: [{lb_endpoints: "
            + "[{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 3}}}}]}]}"
            + (http2 ? h2 : "") + "}\n"
        return text
    }

    static func hcm(_ text: String) throws -> HTTPConnectionManagerConfig {
        let chain = try #require(try Bootstrap.load(text: text).listeners.first?.filterChains.first)
        guard case .httpConnectionManager(let h) = chain.network else { throw ConfigError(path: "", line: nil, message: "") }
        return h
    }

    static func error(_ text: String) -> String {
        do {
            _ = try Bootstrap.load(text: text)
            return "loaded"
        } catch {
            return "\(error)"
        }
    }

    @Test func zipkinTracerLoads() throws {
        let tracing = try #require(try Self.hcm(Self.yaml(Self.zipkin)).tracing)
        guard case .zipkin(let z) = tracing.provider else { Issue.record("not zipkin"); return }
        #expect(z.collectorCluster == "zipkin")
        #expect(z.collectorEndpoint == "/api/v2/spans")
        #expect(z.collectorHostname == "zipkin")
        #expect(z.sharedSpanContext)
        #expect(tracing.randomSampling == FractionalPercent(numerator: 10_000, denominator: 10_000))
    }

    @Test func samplingPercentagesAndCustomTags() throws {
        let text = Self.yaml(#"{random_sampling: {value: 12.5}, client_sampling: {value: 0}, overall_sampling: {value: 50}, max_path_tag_length: 10, custom_tags: [{tag: a, literal: {value: x}}, {tag: b, request_header: {name: X-B, default_value: none}}], provider: "#
            + Self.zipkin.dropFirst(11))
        let tracing = try #require(try Self.hcm(text).tracing)
        #expect(tracing.randomSampling.numerator == 1250)
        #expect(tracing.clientSampling.numerator == 0)
        #expect(tracing.overallSampling.numerator == 5000)
        #expect(tracing.maxPathTagLength == 10)
        #expect(tracing.customTags == [CustomTag(tag: "a", source: .literal("x")),
                                       CustomTag(tag: "b", source: .requestHeader(name: "x-b", default: "none"))])
    }

    @Test func openTelemetryOverGRPCNeedsAnHTTP2Cluster() throws {
        let grpc = Self.otel(#"grpc_service: {envoy_grpc: {cluster_name: otel}, timeout: 0.250s}, service_name: front"#)
        let tracing = try #require(try Self.hcm(Self.yaml(grpc, http2: true)).tracing)
        guard case .openTelemetry(let o) = tracing.provider else { Issue.record("not otel"); return }
        #expect(o.serviceName == "front")
        #expect(o.transport == .grpc(cluster: "otel", authority: nil, timeout: .milliseconds(250)))
        #expect(Self.error(Self.yaml(grpc)).contains("collector cluster 'otel' must be HTTP/2"))
    }

    @Test func openTelemetryOverHTTP() throws {
        let http = Self.otel(#"http_service: {http_uri: {uri: "http://collector:4318/v1/traces", cluster: otel, timeout: 1s}}"#)
        let tracing = try #require(try Self.hcm(Self.yaml(http)).tracing)
        guard case .openTelemetry(let o) = tracing.provider else { Issue.record("not otel"); return }
        #expect(o.transport == .http(cluster: "otel", path: "/v1/traces", authority: "collector:4318",
                                     timeout: .seconds(1), headers: []))
        #expect(o.serviceName == "unknown_service:envoy")
    }

    @Test func routesMayUseHTTP2Clusters() throws {
        let route = #"{match: {prefix: "/"}, route: {cluster: otel}}"#
        let grpc = Self.otel(#"grpc_service: {envoy_grpc: {cluster_name: otel}}"#)
        #expect(try Self.hcm(Self.yaml(grpc, routes: [route], http2: true)).tracing != nil)
    }

    @Test(arguments: [
        (zipkin.replacingOccurrences(of: "collector_cluster: zipkin", with: "collector_cluster: nope"),
         "envoy.tracers.zipkin refers to unknown cluster 'nope'"),
        (zipkin.replacingOccurrences(of: "HTTP_JSON", with: "HTTP_PROTO"), "collector_endpoint_version HTTP_PROTO"),
        ("{verbose: true}", "verbose: true"),
        ("{operation: x}", "field 'operation' is a valid Envoy field but is not supported"),
        (#"{provider: {name: envoy.tracers.datadog, typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.DatadogConfig, collector_cluster: zipkin}}}"#,
         "tracer envoy.tracers.datadog"),
        (#"{custom_tags: [{tag: m, metadata: {kind: {request: {}}}}]}"#, "field 'metadata' is a valid Envoy field"),
        ("{random_sampling: {value: 101}}", "101.0 is out of range"),
    ])
    func refused(_ tracing: String, _ message: String) {
        let e = Self.error(Self.yaml(tracing))
        #expect(e.contains(message), "\(e)")
        #expect(e.contains("tracing"), "the error names the field's path: \(e)")
    }

    @Test func decoratorAndStartChildSpan() throws {
        let route = #"{match: {prefix: "/"}, route: {cluster: backend}, decorator: {operation: checkStock, propagate: false}}"#
        var text = Self.yaml(Self.zipkin, routes: [route])
        text = text.replacingOccurrences(
            of: #"typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}"#,
            with: #"typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router, start_child_span: true}"#)
        let h = try Self.hcm(text)
        let decorator = h.routeConfig.virtualHosts[0].routes[0].decorator
        #expect(decorator == RouteDecorator(operation: "checkStock", propagate: false))
        #expect((h.httpFilters.last?.config as? RouterConfig)?.startChildSpan == true)
        let empty = #"{match: {prefix: "/"}, route: {cluster: backend}, decorator: {operation: ""}}"#
        #expect(Self.error(Self.yaml(Self.zipkin, routes: [empty])).contains("decorator.operation"))
    }
}
