import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarTracing

/// A span collector on loopback: records every POST (path, headers, body) and answers 202.
final class TestCollector: Sendable {
    struct Report: Sendable {
        var path: String
        var headers: [(String, String)]
        var body: [UInt8]
    }

    let port: Int
    private let reports = NIOLockedValueBox<[Report]>([])
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel: Channel

    init() throws {
        let reports = self.reports
        channel = try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(CollectorHandler(reports: reports))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        port = channel.localAddress!.port!
    }

    var received: [Report] { reports.withLockedValue { $0 } }

    /// Waits up to `seconds` for `count` reports.
    func wait(reports count: Int, seconds: Double = 10) -> [Report] {
        wait(seconds: seconds) { $0.count >= count }
    }

    /// Waits up to `seconds` until `done` holds for the reports received.
    func wait(seconds: Double = 10, until done: ([Report]) -> Bool) -> [Report] {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let r = received
            if done(r) { return r }
            usleep(20_000)
        }
        return received
    }

    func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    private final class CollectorHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let reports: NIOLockedValueBox<[Report]>
        var current: Report?

        init(reports: NIOLockedValueBox<[Report]>) { self.reports = reports }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                current = Report(path: head.uri, headers: head.headers.map { ($0.name, $0.value) }, body: [])
            case .body(let buffer):
                current?.body += Array(buffer.readableBytesView)
            case .end:
                if let current { reports.withLockedValue { $0.append(current) } }
                current = nil
                var headers = HTTPHeaders()
                headers.add(name: "content-length", value: "0")
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .accepted, headers: headers))),
                              promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }
}

/// Tracing through the proxy on real sockets: the decision and context reach the upstream, and the spans reach
/// a collector, as Zipkin JSON and as OTLP/HTTP protobuf.
@Suite(.serialized) struct TracingIntegrationTests {
    static let runtime = """
    layered_runtime:
      layers:
      - name: static
        static_layer: {tracing.zipkin.min_flush_spans: 1, tracing.opentelemetry.min_flush_spans: 2}

    """

    static func config(backend: Int, collector: Int, tracing: String, routes: [String] = [ProxyConfig.catchAll],
                       router: String = "") -> String {
        var text = ProxyConfig.yaml(routes: routes, clusters: [("backend", backend), ("collector", collector)],
                                    hcmExtra: ["tracing: \(tracing)"])
        if !router.isEmpty {
            text = text.replacingOccurrences(
                of: #"typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}"#,
                with: #"typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router, "#
                    + router + "}")
        }
        return "node: {id: node-t, cluster: test-cluster}\n" + runtime + text
    }

    /// Polls `check` for up to five seconds.
    static func eventually(_ check: () throws -> Bool) throws -> Bool {
        for _ in 0..<100 {
            if try check() { return true }
            usleep(50_000)
        }
        return try check()
    }

    static let zipkin = #"{provider: {name: envoy.tracers.zipkin, typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig, collector_cluster: collector, collector_endpoint: /api/v2/spans}}}"#

    @Test func zipkinSpansReachTheCollectorAndTheContextReachesTheUpstream() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let collector = try TestCollector()
        defer { collector.stop() }
        let route = #"{match: {prefix: "/"}, route: {cluster: backend}, decorator: {operation: checkout}}"#
        let proxy = try ProxyHarness(yaml: Self.config(backend: backend.port, collector: collector.port,
                                                       tracing: Self.zipkin, routes: [route], router: "start_child_span: true"))
        defer { proxy.shutdown() }
        let r = try proxy.fetch("GET", "/cart", headers: ["x-b3-traceid: 463ac35c9f6413ad", "x-b3-spanid: a2fb4a1d1a96d312", "x-b3-sampled: 1", "x-request-id: 11111111-2222-4333-8444-555555555555"])
        #expect(r.status == 200)
        #expect(r.header("x-envoy-decorator-operation") == "checkout")
        let up = try #require(backend.lastHead)
        #expect(up.header("x-request-id") == "11111111-2222-9333-8444-555555555555")
        #expect(up.header("x-b3-traceid") == "463ac35c9f6413ad")
        #expect(up.header("x-b3-parentspanid") == "a2fb4a1d1a96d312")  // the router's child span's parent
        let childID = try #require(up.header("x-b3-spanid"))
        #expect(childID != "a2fb4a1d1a96d312")

        // Two spans, in one report or two (the exporter puts whatever is queued when it sends into one report).
        func spansIn(_ reports: [TestCollector.Report]) -> [[String: Any]] {
            reports.flatMap { (try? JSONSerialization.jsonObject(with: Data($0.body)) as? [[String: Any]]) ?? [] }
        }
        let reports = collector.wait { spansIn($0).count >= 2 }
        let spans = spansIn(reports)
        #expect(spans.count == 2)
        #expect(reports.allSatisfy { $0.path == "/api/v2/spans" })
        #expect(reports.first?.headers.contains { $0.0.lowercased() == "host" && $0.1 == "collector" } == true)
        let server = try #require(spans.first { $0["kind"] as? String == "SERVER" })
        let child = try #require(spans.first { $0["kind"] as? String == "CLIENT" })
        #expect(server["id"] as? String == "a2fb4a1d1a96d312")  // shared with the caller
        #expect(server["name"] as? String == "checkout")
        #expect(child["id"] as? String == childID)
        #expect(child["parentId"] as? String == "a2fb4a1d1a96d312")
        #expect(child["name"] as? String == "router backend egress")
        let endpoint = try #require(server["localEndpoint"] as? [String: Any])
        #expect(endpoint["serviceName"] as? String == "test-cluster")
        let tags = try #require(server["tags"] as? [String: String])
        #expect(tags["http.status_code"] == "200")
        #expect(tags["node_id"] == "node-t")
        #expect(tags["guid:x-request-id"] == "11111111-2222-9333-8444-555555555555")
        #expect(tags["upstream_cluster"] == "backend")
        #expect(tags["http.url"] == "http://example.com/cart")
        // The exporter counts a report once the collector's answer is back, just after the collector has it.
        #expect(try Self.eventually { try proxy.stat("tracing.zipkin.spans_sent") == 2 })
        #expect(try Self.eventually { try proxy.stat("tracing.zipkin.reports_sent") == reports.count })
    }

    @Test func spawnUpstreamSpanGivesEachAttemptItsOwnSpan() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let collector = try TestCollector()
        defer { collector.stop() }
        let tracing = Self.zipkin.replacingOccurrences(of: "{provider:", with: "{spawn_upstream_span: true, provider:")
        let proxy = try ProxyHarness(yaml: Self.config(backend: backend.port, collector: collector.port, tracing: tracing))
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/", headers: ["x-b3-traceid: 463ac35c9f6413ad", "x-b3-spanid: a2fb4a1d1a96d312"]).status == 200)
        let up = try #require(backend.lastHead)
        #expect(up.header("x-b3-parentspanid") == "a2fb4a1d1a96d312")
        #expect(up.header("x-b3-spanid") != "a2fb4a1d1a96d312")
    }

    /// Without a child span the context is written once, into the head every attempt copies: a retried request
    /// carries the same trace headers on each try, after the router's own headers.
    @Test func everyAttemptCarriesTheSameContext() throws {
        let attempts = NIOLockedValueBox(0)
        let backend = try ScriptedBackend { _ in
            attempts.withLockedValue { $0 += 1; return $0 } == 1 ? .init(status: 503) : .init(status: 200)
        }
        defer { backend.stop() }
        let collector = try TestCollector()
        defer { collector.stop() }
        let route = #"{match: {prefix: "/"}, route: {cluster: backend, retry_policy: {retry_on: "5xx", num_retries: 1}}}"#
        let proxy = try ProxyHarness(yaml: Self.config(backend: backend.port, collector: collector.port,
                                                       tracing: Self.zipkin, routes: [route]))
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/r", headers: ["x-b3-traceid: 463ac35c9f6413ad", "x-b3-spanid: a2fb4a1d1a96d312"]).status == 200)
        let tries = backend.requests
        #expect(tries.count == 2)
        for r in tries {
            #expect(r.header("x-b3-traceid") == "463ac35c9f6413ad")
            #expect(r.header("x-b3-spanid") == "a2fb4a1d1a96d312")
            #expect(r.header("x-b3-sampled") == "1")
            #expect(r.headers.filter { $0.name.lowercased() == "x-b3-spanid" }.count == 1)
            let names = r.headers.map { $0.name.lowercased() }
            let timeout = try #require(names.firstIndex(of: "x-envoy-expected-rq-timeout-ms"))
            #expect(try #require(names.firstIndex(of: "x-b3-traceid")) > timeout)
        }
        #expect(tries.first?.headers.map(\.name) == tries.last?.headers.map(\.name))
    }

    @Test func unsampledRequestsPropagateTheDecisionAndExportNothing() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let collector = try TestCollector()
        defer { collector.stop() }
        let tracing = Self.zipkin.replacingOccurrences(of: "{provider:", with: "{random_sampling: {value: 0}, provider:")
        let proxy = try ProxyHarness(yaml: Self.config(backend: backend.port, collector: collector.port, tracing: tracing))
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/").status == 200)
        let up = try #require(backend.lastHead)
        #expect(up.header("x-b3-sampled") == "0")
        #expect(up.header("x-request-id")?.dropFirst(14).first == "4")
        // A client-forced trace is sampled whatever random_sampling says.
        #expect(try proxy.fetch("GET", "/", headers: ["x-client-trace-id: c1"]).status == 200)
        #expect(backend.lastHead?.header("x-b3-sampled") == "1")
        #expect(collector.wait(reports: 1).count == 1)
        usleep(200_000)
        #expect(collector.received.count == 1)
    }

    /// An x-client-trace-id listed in internal_only_headers is removed before the tracing decision: it forces
    /// no trace, whether the connection manager makes the request id or the request brings one.
    @Test func anInternalOnlyClientTraceIDForcesNoTrace() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let collector = try TestCollector()
        defer { collector.stop() }
        let tracing = Self.zipkin.replacingOccurrences(of: "{provider:", with: "{random_sampling: {value: 0}, provider:")
        let yaml = Self.config(backend: backend.port, collector: collector.port, tracing: tracing)
            .replacingOccurrences(of: "name: local_route\n",
                                  with: "name: local_route\n            internal_only_headers: [X-Client-Trace-Id]\n")
        #expect(yaml.contains("internal_only_headers"))
        let proxy = try ProxyHarness(yaml: yaml)
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/", headers: ["x-client-trace-id: c1"]).status == 200)
        #expect(backend.lastHead?.header("x-b3-sampled") == "0")
        #expect(backend.lastHead?.header("x-client-trace-id") == nil)
        #expect(try proxy.fetch("GET", "/", headers: ["x-client-trace-id: c1",
                                                      "x-request-id: 11111111-2222-4333-8444-555555555555"]).status == 200)
        #expect(backend.lastHead?.header("x-b3-sampled") == "0")
        #expect(backend.lastHead?.header("x-request-id") == "11111111-2222-4333-8444-555555555555")
    }

    @Test func openTelemetryOverHTTPExportsProtobufSpans() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let collector = try TestCollector()
        defer { collector.stop() }
        let tracing = #"{provider: {name: envoy.tracers.opentelemetry, typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig, service_name: shop, http_service: {http_uri: {uri: "http://otel:4318/v1/traces", cluster: collector, timeout: 2s}, request_headers_to_add: [{header: {key: x-tenant, value: t1}}]}}}}"#
        let proxy = try ProxyHarness(yaml: Self.config(backend: backend.port, collector: collector.port, tracing: tracing))
        defer { proxy.shutdown() }
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        #expect(try proxy.fetch("GET", "/a", headers: ["traceparent: \(parent)"]).status == 200)
        let first = try #require(backend.lastHead?.header("traceparent"))
        #expect(first.hasPrefix("00-0af7651916cd43dd8448eb211c80319c-"))
        #expect(first.hasSuffix("-01"))
        #expect(try proxy.fetch("GET", "/b").status == 200)  // min_flush_spans 2: this one sends both
        let reports = collector.wait(reports: 1)
        let report = try #require(reports.first)
        #expect(report.path == "/v1/traces")
        #expect(report.headers.contains { $0.0.lowercased() == "content-type" && $0.1 == "application/x-protobuf" })
        #expect(report.headers.contains { $0.0.lowercased() == "x-tenant" && $0.1 == "t1" })
        #expect(report.headers.contains { $0.0.lowercased() == "host" && $0.1 == "otel:4318" })
        let request = try OTLPEncoding.Request(serializedBytes: report.body)
        #expect(request.resourceSpans.first?.resource.attributes.contains {
            $0.key == "service.name" && $0.value.stringValue == "shop"
        } == true)
        let spans = request.resourceSpans.flatMap { $0.scopeSpans.flatMap(\.spans) }
        #expect(spans.count == 2)
        let continued = try #require(spans.first { !$0.parentSpanID.isEmpty })
        #expect(continued.parentSpanID == Data([0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]))
        #expect(continued.name == "ingress")
        #expect(continued.kind == .server)
        #expect(first.contains(TraceHex.encode(continued.spanID.withUnsafeBytes { UInt64(bigEndian: $0.loadUnaligned(as: UInt64.self)) })))
    }

    @Test func aDeadCollectorCostsNoRequest() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        // Port 1 on loopback: nothing listens, every report fails.
        let proxy = try ProxyHarness(yaml: Self.config(backend: backend.port, collector: 1, tracing: Self.zipkin))
        defer { proxy.shutdown() }
        for _ in 0..<20 { #expect(try proxy.fetch("GET", "/").status == 200) }
        var failed = 0
        for _ in 0..<100 {
            failed = try proxy.stat("tracing.zipkin.reports_failed") ?? 0
            if failed > 0 { break }
            usleep(50_000)
        }
        #expect(failed > 0)
        #expect(try proxy.stat("tracing.zipkin.spans_sent") == 0)
    }
}
