import Foundation
import NIOCore
import NIOHTTP1
import SwiftProtobuf
import Testing

@testable import SidecarCore
@testable import SidecarTracing

/// How spans get their ids and names from the caller's context, what the next hop is told, and how spans are
/// written for Zipkin and OTLP (shapes checked against Envoy 1.40's output).
@Suite struct HTTPTracerTests {
    static func zipkin(shared: Bool = true, w3c: Bool = false, egress: Bool = false) -> HTTPTracer {
        var z = ZipkinTracerConfig(collectorCluster: "zipkin", collectorEndpoint: "/api/v2/spans",
                                   collectorHostname: "zipkin")
        z.sharedSpanContext = shared
        z.w3cPropagation = w3c
        var config = TracingConfig()
        config.provider = .zipkin(z)
        return HTTPTracer(config: config, egress: egress, exporter: nil, nodeID: "node-a", environment: [:])
    }

    static func otel(egress: Bool = false) -> HTTPTracer {
        var config = TracingConfig()
        config.provider = .openTelemetry(OpenTelemetryTracerConfig(
            transport: .grpc(cluster: "otel", authority: nil, timeout: nil)))
        return HTTPTracer(config: config, egress: egress, exporter: nil, nodeID: "node-a", environment: [:])
    }

    static let b3 = HTTPHeaders([("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"), ("x-b3-spanid", "a2fb4a1d1a96d312"),
                                 ("x-b3-sampled", "1")])

    @Test func zipkinRootSpanUsesItsTraceIDAsSpanIDAndTheHostAsName() throws {
        var random = FastRandom()
        let span = try #require(Self.zipkin().startSpan(HTTPHeaders(), reason: .sampling, operation: nil,
                                                        host: "svc:80", random: &random))
        #expect(span.trace.high == 0)
        #expect(span.spanID == span.trace.low)
        #expect(span.parentID == 0)
        #expect(span.name == "svc:80")
        #expect(span.kind == .server)
        #expect(span.shared)
        #expect(span.sampled)
        var out = HTTPHeaders()
        Self.zipkin().inject(span, into: &out)
        #expect(out.first(name: "x-b3-traceid") == TraceHex.encode(span.trace.low))
        #expect(out.first(name: "x-b3-spanid") == TraceHex.encode(span.spanID))
        #expect(out.first(name: "x-b3-parentspanid") == nil)
        #expect(out.first(name: "x-b3-sampled") == "1")
    }

    @Test func zipkinServerSpanSharesTheCallersSpanUnlessToldNotTo() throws {
        var random = FastRandom()
        let shared = try #require(Self.zipkin().startSpan(Self.b3, reason: .notTraceable, operation: "op",
                                                          host: "h", random: &random))
        #expect(shared.spanID == 0xa2fb_4a1d_1a96_d312)
        #expect(shared.trace == TraceID(high: 0x463a_c35c_9f64_13ad, low: 0x4848_5a39_53bb_6124))
        #expect(shared.sampled)  // the caller's x-b3-sampled wins over the decision
        #expect(shared.name == "op")
        let child = try #require(Self.zipkin(shared: false).startSpan(Self.b3, reason: .sampling, operation: nil,
                                                                      host: "h", random: &random))
        #expect(child.spanID != 0xa2fb_4a1d_1a96_d312)
        #expect(child.parentID == 0xa2fb_4a1d_1a96_d312)
        #expect(!child.shared)
        // An egress (client) span is always a child.
        let client = try #require(Self.zipkin(egress: true).startSpan(Self.b3, reason: .sampling, operation: nil,
                                                                      host: "h", random: &random))
        #expect(client.parentID == 0xa2fb_4a1d_1a96_d312)
        #expect(client.kind == .client)
    }

    @Test func zipkinAnswersASingleB3HeaderInKindAndReadsW3COnlyWhenAsked() throws {
        var random = FastRandom()
        let single = HTTPHeaders([("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")])
        let span = try #require(Self.zipkin().startSpan(single, reason: .sampling, operation: nil, host: "h",
                                                        random: &random))
        var out = HTTPHeaders()
        Self.zipkin().inject(span, into: &out)
        #expect(out.first(name: "b3") == "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")
        #expect(out.first(name: "x-b3-traceid") == nil)

        let w3c = HTTPHeaders([("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")])
        let ignored = try #require(Self.zipkin().startSpan(w3c, reason: .sampling, operation: nil, host: "h",
                                                           random: &random))
        #expect(ignored.trace.high == 0)  // a new 64-bit trace: USE_B3 does not read traceparent
        let read = try #require(Self.zipkin(w3c: true).startSpan(w3c, reason: .sampling, operation: nil, host: "h",
                                                                 random: &random))
        #expect(read.trace == TraceID(high: 0x0af7_6519_16cd_43dd, low: 0x8448_eb21_1c80_319c))
        var both = HTTPHeaders()
        Self.zipkin(w3c: true).inject(read, into: &both)
        #expect(both.first(name: "x-b3-traceid") == "0af7651916cd43dd8448eb211c80319c")
        #expect(both.first(name: "traceparent")?.hasPrefix("00-0af7651916cd43dd8448eb211c80319c-") == true)
    }

    @Test func openTelemetryContinuesTheCallersTraceAsAChild() throws {
        var random = FastRandom()
        let h = HTTPHeaders([("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"),
                             ("tracestate", "k=v")])
        let span = try #require(Self.otel().startSpan(h, reason: .sampling, operation: nil, host: "h", random: &random))
        #expect(span.trace == TraceID(high: 0x0af7_6519_16cd_43dd, low: 0x8448_eb21_1c80_319c))
        #expect(span.parentID == 0xb7ad_6b71_6920_3331)
        #expect(span.spanID != span.parentID)
        #expect(!span.sampled)  // the caller's flags decide
        #expect(span.remoteParent)
        #expect(span.name == "ingress")
        var out = HTTPHeaders()
        Self.otel().inject(span, into: &out)
        #expect(out.first(name: "traceparent") == "00-0af7651916cd43dd8448eb211c80319c-\(TraceHex.encode(span.spanID))-00")
        #expect(out.first(name: "tracestate") == "k=v")
        // No context: a new 128-bit trace, sampled by the decision; egress spans are "egress <host>".
        let root = try #require(Self.otel(egress: true).startSpan(HTTPHeaders(), reason: .sampling, operation: nil,
                                                                  host: "svc:8080", random: &random))
        #expect(root.trace.high != 0)
        #expect(root.parentID == 0)
        #expect(root.name == "egress svc:8080")
        #expect(root.kind == .client)
        var rootOut = HTTPHeaders()
        Self.otel().inject(root, into: &rootOut)
        #expect(rootOut.first(name: "tracestate") == "")
    }

    @Test func childSpansAreNamedForTheClusterAndParentedOnTheRequestsSpan() throws {
        var random = FastRandom()
        let tracer = Self.zipkin()
        let parent = try #require(tracer.startSpan(HTTPHeaders(), reason: .sampling, operation: nil, host: "h",
                                                   random: &random))
        let child = tracer.startChild(of: parent, cluster: "svc", random: &random)
        #expect(child.name == "router svc egress")
        #expect(child.parentID == parent.spanID)
        #expect(child.trace == parent.trace)
        #expect(child.kind == .client)
        tracer.finishChild(child, cluster: "svc", upstreamAddress: "127.0.0.1:8080", httpProtocol: "HTTP/1.1",
                           statusCode: 503, responseFlags: "-")
        let tags = Dictionary(uniqueKeysWithValues: child.tags.map { ($0.name, $0.value) })
        #expect(tags["upstream_address"] == "127.0.0.1:8080")
        #expect(tags["error"] == "true")
        #expect(child.finished)
    }

    static func finished(_ tracer: HTTPTracer, status: Int, headers: HTTPHeaders = HTTPHeaders(),
                         path: String = "/p?q=1", deferTags: Bool = false) throws -> Span {
        var random = FastRandom()
        let span = try #require(tracer.startSpan(headers, reason: .sampling, operation: nil, host: "a.example",
                                                 random: &random))
        var h = headers
        h.add(name: "x-request-id", value: "rid")
        h.add(name: "user-agent", value: "ua")
        tracer.finish(span, HTTPTracer.DownstreamInfo(
            requestHeaders: h, scheme: "http", host: "a.example", path: path, method: "GET",
            httpProtocol: "HTTP/1.1", peerAddress: "127.0.0.1", requestSize: 3, responseSize: 5,
            upstreamCluster: "svc", statusCode: status, responseFlags: []), deferTags: deferTags)
        return span
    }

    /// The exporter's Zipkin report writes a downstream span's tags from what they are made of; they are the
    /// tags the span's own list gets, escapes and a cut path included.
    @Test func zipkinWritesDeferredTagsAsTheSpansTagList() throws {
        for status in [0, 200, 503] {
            let headers = HTTPHeaders([("x-client-trace-id", "c\"t"), ("x-envoy-downstream-service-cluster", "front\tend")])
            let path = "/p?q=" + String(repeating: "\u{e9}", count: 200)
            let listed = try Self.finished(Self.zipkin(), status: status, headers: headers, path: path)
            let deferred = try Self.finished(Self.zipkin(), status: status, headers: headers, path: path, deferTags: true)
            #expect(deferred.tags.isEmpty)
            let json = ZipkinJSON.encode([deferred], localEndpoint: .init(serviceName: "s", address: "192.0.2.2"))
            let list = try #require(try JSONSerialization.jsonObject(with: Data(json.readableBytesView)) as? [[String: Any]])
            let tags = try #require(list.first?["tags"] as? [String: String])
            #expect(tags == Dictionary(uniqueKeysWithValues: listed.tags.map { ($0.name, $0.value) }))
            #expect(tags["http.url"]?.hasPrefix("http://a.example/p?q=\u{e9}") == true)
            #expect(tags["guid:x-client-trace-id"] == "c\"t")
            #expect((tags["error"] == "true") == (status != 200))
        }
    }

    @Test func downstreamSpanTagsAreEnvoys() throws {
        let span = try Self.finished(Self.zipkin(), status: 200)
        let tags = Dictionary(uniqueKeysWithValues: span.tags.map { ($0.name, $0.value) })
        #expect(tags == [
            "node_id": "node-a", "guid:x-request-id": "rid", "http.url": "http://a.example/p?q=1", "http.method": "GET",
            "downstream_cluster": "-", "user_agent": "ua", "http.protocol": "HTTP/1.1", "peer.address": "127.0.0.1",
            "request_size": "3", "response_size": "5", "component": "proxy", "upstream_cluster": "svc",
            "upstream_cluster.name": "svc", "http.status_code": "200", "response_flags": "-",
        ])
        #expect(!span.error)
        let failed = try Self.finished(Self.otel(), status: 502)
        #expect(failed.error)
        #expect(failed.tags.contains(SpanTag(name: "zone", value: "")))
        #expect(failed.tags.contains(SpanTag(name: "error", value: "true")))
    }

    @Test func zipkinJSONIsTheV2SpanList() throws {
        let span = try Self.finished(Self.zipkin(), status: 503)
        span.setTag("odd", "tab\there, quote \" backslash \\ nul \u{0} é 日本")
        let json = ZipkinJSON.encode([span], localEndpoint: .init(serviceName: "front\"proxy", address: "192.0.2.2"))
        let list = try #require(try JSONSerialization.jsonObject(with: Data(json.readableBytesView)) as? [[String: Any]])
        let s = try #require(list.first)
        #expect(s["traceId"] as? String == TraceHex.encode(span.trace.low))
        #expect(s["id"] as? String == TraceHex.encode(span.spanID))
        #expect(s["parentId"] == nil)
        #expect(s["name"] as? String == "a.example")
        #expect(s["kind"] as? String == "SERVER")
        #expect(s["shared"] as? Bool == true)
        #expect((s["timestamp"] as? Int).map { UInt64($0) } == span.startUnixNanos / 1000)
        let endpoint = try #require(s["localEndpoint"] as? [String: Any])
        #expect(endpoint["serviceName"] as? String == "front\"proxy")
        #expect(endpoint["ipv4"] as? String == "192.0.2.2")
        let annotations = try #require(s["annotations"] as? [[String: Any]])
        #expect(annotations.first?["value"] as? String == "ss")
        let tags = try #require(s["tags"] as? [String: String])
        #expect(tags["error"] == "true")
        #expect(tags["http.status_code"] == "503")
        #expect(tags["odd"] == "tab\there, quote \" backslash \\ nul \u{0} é 日本")
        #expect(s["duration"] as? Int == Int(span.durationMicros))
    }

    /// Reports of many spans whose tag inputs hold every kind of text (escapes, control bytes, multi-byte
    /// characters, long values, custom tags from the request): each parses as JSON and carries the span's own tag
    /// list, so no span outgrows the room reserved for it.
    @Test func zipkinReportsOfArbitraryTextParseAndMatchTheTagLists() throws {
        var random = FastRandom()
        let alphabet: [Character] = ["a", "Z", "0", "/", "?", "=", "\"", "\\", "\n", "\t", "\u{0}", "\u{1f}", "\u{7f}",
                                     "é", "日", "🙂", " ", ":", "-"]
        func text(_ max: Int) -> String {
            String((0..<Int(random.next() % UInt64(max + 1))).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] })
        }
        var config = TracingConfig()
        config.provider = .zipkin(ZipkinTracerConfig(collectorCluster: "zipkin", collectorEndpoint: "/api/v2/spans",
                                                     collectorHostname: "zipkin"))
        config.maxPathTagLength = 64
        config.customTags = [CustomTag(tag: "from\"header", source: .requestHeader(name: "x-custom", default: "d")),
                             CustomTag(tag: "lit", source: .literal("v\u{1}al"))]
        let tracer = HTTPTracer(config: config, egress: false, exporter: nil, nodeID: text(40), environment: [:])
        for _ in 0..<20 {
            var deferred: [Span] = []
            var listed: [Span] = []
            for _ in 0..<10 {
                var h = HTTPHeaders()
                for name in ["x-request-id", "user-agent", "x-client-trace-id", "x-custom", "x-envoy-original-path"]
                    where random.next() % 2 == 0 {
                    h.add(name: name, value: text(30))
                }
                let info = HTTPTracer.DownstreamInfo(
                    requestHeaders: h, scheme: "https", host: text(20), path: "/" + text(100), method: text(8),
                    httpProtocol: "HTTP/2", peerAddress: text(15), requestSize: random.next(), responseSize: random.next() % 1000,
                    upstreamCluster: random.next() % 2 == 0 ? nil : text(20), statusCode: Int(random.next() % 600),
                    responseFlags: [])
                for deferTags in [true, false] {
                    let span = try #require(tracer.startSpan(HTTPHeaders(), reason: .sampling, operation: text(10),
                                                             host: "h", random: &random))
                    tracer.finish(span, info, deferTags: deferTags)
                    if deferTags { deferred.append(span) } else { listed.append(span) }
                }
            }
            let json = ZipkinJSON.encode(deferred, localEndpoint: .init(serviceName: text(10), address: "192.0.2.2"))
            let list = try #require(try JSONSerialization.jsonObject(with: Data(json.readableBytesView)) as? [[String: Any]])
            #expect(list.count == deferred.count)
            for (s, l) in zip(list, listed) {
                let tags = try #require(s["tags"] as? [String: String])
                #expect(tags == Dictionary(l.tags.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a }))
            }
        }
    }

    @Test func otlpSpanHasEnvoysFlagsAndStatus() throws {
        var random = FastRandom()
        let tracer = Self.otel()
        let h = HTTPHeaders([("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")])
        let span = try #require(tracer.startSpan(h, reason: .sampling, operation: "op", host: "h", random: &random))
        span.error = true
        span.finish()
        let request = OTLPEncoding.request([span], resource: .init(serviceName: "front"))
        let bytes: [UInt8] = try request.serializedBytes()
        let decoded = try OTLPEncoding.Request(serializedBytes: bytes)
        let m = try #require(decoded.resourceSpans.first?.scopeSpans.first?.spans.first)
        #expect(m.traceID == Data([0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c]))
        #expect(m.parentSpanID == Data([0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]))
        #expect(m.flags == 0x301)  // sampled, with a remote parent (Envoy writes 769)
        #expect(m.kind == .server)
        #expect(m.name == "op")
        #expect(m.status.code == .error)
        let resource = Dictionary(uniqueKeysWithValues: decoded.resourceSpans[0].resource.attributes.map {
            ($0.key, $0.value.stringValue)
        })
        #expect(resource["service.name"] == "front")
    }

    /// A span whose tags the tracer left to the exporter gets them, and its error status, when it is encoded for
    /// OTLP: the same tags as one tagged at once.
    @Test func otlpEncodingWritesDeferredTags() throws {
        let deferred = try Self.finished(Self.otel(), status: 503, deferTags: true)
        let listed = try Self.finished(Self.otel(), status: 503)
        #expect(deferred.tags.isEmpty)
        let m = OTLPEncoding.span(deferred)
        let attributes = Dictionary(uniqueKeysWithValues: m.attributes.map { ($0.key, $0.value.stringValue) })
        #expect(attributes == Dictionary(uniqueKeysWithValues: listed.tags.map { ($0.name, $0.value) }))
        #expect(attributes["zone"] == "")
        #expect(m.status.code == .error)
    }
}
