import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarTracing

/// What the closing note claims beyond the other tracing tests: custom tags, the url tag's cut, the export
/// queue's bound, HTTP/2 cluster rules and the pod defaults' tracing.
@Suite struct TracingBehaviourTests {
    @Test func customTagsAndTheURLCut() throws {
        var config = TracingConfig()
        config.provider = .zipkin(ZipkinTracerConfig(collectorCluster: "z", collectorEndpoint: "/", collectorHostname: "z"))
        config.maxPathTagLength = 20
        config.customTags = [
            CustomTag(tag: "lit", source: .literal("v")),
            CustomTag(tag: "env", source: .environment(name: "POD", default: nil)),
            CustomTag(tag: "env-missing", source: .environment(name: "NOPE", default: "dflt")),
            CustomTag(tag: "hdr", source: .requestHeader(name: "x-tenant", default: nil)),
            CustomTag(tag: "hdr-missing", source: .requestHeader(name: "x-none", default: "none")),
            CustomTag(tag: "hdr-absent", source: .requestHeader(name: "x-absent", default: nil)),
        ]
        let tracer = HTTPTracer(config: config, egress: false, exporter: nil, nodeID: "n", environment: ["POD": "p1"])
        var random = FastRandom()
        let span = try #require(tracer.startSpan(HTTPHeaders(), reason: .sampling, operation: nil, host: "h",
                                                 random: &random))
        tracer.finish(span, HTTPTracer.DownstreamInfo(
            requestHeaders: HTTPHeaders([("x-tenant", "t9")]), scheme: "http", host: "a.example",
            path: "/a/long/path/beyond/twenty", method: "GET", httpProtocol: "HTTP/1.1", peerAddress: "127.0.0.1",
            requestSize: 0, responseSize: 0, upstreamCluster: nil, statusCode: 200, responseFlags: []))
        let tags = Dictionary(span.tags.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        #expect(tags["lit"] == "v")
        #expect(tags["env"] == "p1")
        #expect(tags["env-missing"] == "dflt")
        #expect(tags["hdr"] == "t9")
        #expect(tags["hdr-missing"] == "none")
        #expect(tags["hdr-absent"] == nil)
        // Envoy cuts the path (bytes), not the whole URL.
        #expect(tags["http.url"] == "http://a.example/a/long/path/beyond/")
        #expect(tags["upstream_cluster"] == nil)
    }

    /// A transport that never answers: reports stay in flight.
    final class StuckTransport: SpanTransport {
        let loop: EventLoop
        var promises: [EventLoopPromise<Void>] = []
        init(loop: EventLoop) { self.loop = loop }
        func send(_ spans: [Span]) -> EventLoopFuture<Void> {
            let p = loop.makePromise(of: Void.self)
            promises.append(p)
            return p.futureResult
        }
        func close() { for p in promises { p.fail(CollectorError.closed) } }
    }

    @Test func theQueueIsBoundedAndTheExcessCounted() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let transport = StuckTransport(loop: loop)
        let exporter = SpanExporter(kind: .zipkin, loop: loop, maxPending: 4, transport: transport)
        func spans(_ n: Int) -> [Span] {
            (0..<n).map { _ in Span(trace: TraceID(high: 0, low: 1), spanID: 1, parentID: 0, name: "s", kind: .server,
                                    sampled: true, format: .b3Multi) }
        }
        exporter.submit(spans(3))
        // The first report (sent after the exporter's short collecting delay) takes what was queued and hangs;
        // then the queue fills to 4 and the rest is dropped.
        let deadline = NIODeadline.now() + .seconds(5)
        while try loop.submit({ transport.promises.isEmpty }).wait(), NIODeadline.now() < deadline { usleep(1000) }
        #expect(try loop.submit { transport.promises.count }.wait() == 1)
        exporter.submit(spans(3))
        exporter.submit(spans(3))
        #expect(exporter.spansDropped.load(ordering: .relaxed) == 2)
        exporter.drain(timeout: .milliseconds(50))
        #expect(exporter.reportsFailed.load(ordering: .relaxed) >= 1)
    }

    static func loadError(_ text: String) -> String {
        do {
            _ = try Bootstrap.load(text: text)
            return "loaded"
        } catch {
            return "\(error)"
        }
    }

    @Test func http2ClustersServeOnlyGRPCCollectors() {
        // Zipkin sends HTTP/1.1: its collector may not be HTTP/2.
        let zipkinOnH2 = TracingConfigTests.yaml(TracingConfigTests.zipkin.replacingOccurrences(
            of: "collector_cluster: zipkin", with: "collector_cluster: otel"), http2: true)
        #expect(Self.loadError(zipkinOnH2).contains("cluster 'otel' is HTTP/2"))
        // A tcp_proxy may send to one (it carries bytes; the cluster's HTTP options do not apply), as in Envoy.
        let tcp = """
            admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}
            static_resources:
              listeners:
              - name: t
                address: {socket_address: {address: 127.0.0.1, port_value: 0}}
                filter_chains:
                - filters:
                  - name: envoy.filters.network.tcp_proxy
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: otel}
              clusters:
              - {name: otel, type: STATIC, load_assignment: {cluster_name: otel, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 3}}}}]}]}\(TracingConfigTests.h2)}

            """
        #expect(Self.loadError(tcp) == "loaded")
    }

    @Test(arguments: PodDefaults.Tracing.Provider.allCases)
    func podDefaultsTraceBothCaptureListeners(_ provider: PodDefaults.Tracing.Provider) throws {
        let tracing = try PodDefaults.Tracing(provider: provider, collector: "198.18.0.9:4317", serviceName: "cart")
        let text = PodDefaults.yaml(captureMode: .tproxy, tracing: tracing)
        try ConfigErrorTests.expectNoFieldGaps(text)
        let bootstrap = try Bootstrap.load(text: text)
        var traced: [Listener.TrafficDirection] = []
        for l in bootstrap.listeners {
            for chain in l.filterChains {
                if case .httpConnectionManager(let h) = chain.network, let t = h.tracing?.provider {
                    #expect(t.collectorCluster == "tracing_collector")
                    traced.append(l.trafficDirection)
                }
            }
        }
        #expect(Set(traced) == [.INBOUND, .OUTBOUND])
        let collector = try #require(bootstrap.clusters.first { $0.name == "tracing_collector" })
        #expect(collector.httpProtocolOptions.http2 == (provider == .otlp))
        #expect(throws: ConfigError.self) { try PodDefaults.Tracing(provider: provider, collector: "nohost", serviceName: "x") }
    }
}
