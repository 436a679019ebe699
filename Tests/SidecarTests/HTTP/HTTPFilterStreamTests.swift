import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// The filter chain's iteration rules, without channels: scripted filters record what they see, a recording codec
/// stands for the connection.
@Suite struct HTTPFilterStreamTests {
    /// What reached the connection side.
    final class RecordingCodec: HTTPStreamCodec {
        let loop: EmbeddedEventLoop
        var events: [String] = []
        var heads: [HTTPResponseHead] = []
        var localReplies: [Bool] = []
        var resumed = 0
        var reset = false
        init(loop: EmbeddedEventLoop) { self.loop = loop }
        var eventLoop: EventLoop { loop }
        var downstream: DownstreamInfo { DownstreamInfo() }
        let connectionFilterState = ConnectionFilterState()
        func encodeResponseHead(_ head: HTTPResponseHead, endStream: Bool) {
            heads.append(head)
            events.append("codec:head \(head.status.code)")
        }
        func encodeResponseBody(_ buffer: ByteBuffer) { events.append("codec:body \(String(buffer: buffer))") }
        func encodeResponseEnd(_ trailers: HTTPHeaders?) { events.append("codec:end") }
        func localReplyWillStart(closeConnection: Bool) { localReplies.append(closeConnection) }
        func localReplyHead(status: HTTPResponseStatus, bodyLength: Int, extra: HTTPHeaders) -> HTTPResponseHead {
            var h = extra
            h.add(name: "content-length", value: String(bodyLength))
            return HTTPResponseHead(version: .http1_1, status: status, headers: h)
        }
        func formatContext() -> FormatContext { FormatContext() }
        func setResponseFlag(_ flag: ResponseFlag) { responseFlags.insert(flag) }
        var responseFlags: ResponseFlags = []
        func setResponseCodeDetails(_ details: String) { responseCodeDetails = details }
        var responseCodeDetails: String?
        func forwardedClientAddress(_ headers: HTTPHeaders) -> IPAddress? { nil }
        func resetStream() { reset = true }
        func decodingResumed() { resumed += 1 }
    }

    /// A filter whose answers are scripted and whose calls are logged into a shared log.
    final class ScriptedFilter: HTTPStreamFilter, HTTPFilterFactory, @unchecked Sendable {
        let name: String
        let log: Log
        var onHeaders: (HTTPFilterStream) -> FilterHeadersStatus = { _ in .continue }
        var onData: (ByteBuffer, Bool, HTTPFilterStream) -> FilterDataStatus = { _, _, _ in .continue }
        var addResponseHeader: String?
        init(_ name: String, _ log: Log) {
            self.name = name
            self.log = log
        }
        func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter { self }
        func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
            log.add("\(name):headers")
            head.headers.add(name: "x-seen-by", value: name)
            return onHeaders(stream)
        }
        func decodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus {
            log.add("\(name):data \(String(buffer: data))\(endStream ? " end" : "")")
            return onData(data, endStream, stream)
        }
        func encodeHeaders(_ head: inout HTTPResponseHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
            log.add("\(name):encodeHeaders \(head.status.code)")
            if let h = addResponseHeader { head.headers.add(name: h, value: name) }
            return .continue
        }
        func encodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus {
            log.add("\(name):encodeData \(String(buffer: data))\(endStream ? " end" : "")")
            return .continue
        }
        func onStreamComplete(stream: HTTPFilterStream) { log.add("\(name):complete") }
    }

    /// The terminal filter: records the request it is handed.
    final class TerminalFilter: HTTPStreamFilter, HTTPFilterFactory, @unchecked Sendable {
        let name = "router"
        let log: Log
        var seenBy: [String] = []
        init(_ log: Log) { self.log = log }
        func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter { self }
        func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
            seenBy = head.headers["x-seen-by"]
            log.add("router:headers")
            return .continue
        }
        func decodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus {
            log.add("router:data \(String(buffer: data))\(endStream ? " end" : "")")
            return .continue
        }
    }

    final class Log {
        var lines: [String] = []
        func add(_ s: String) { lines.append(s) }
    }

    struct Fixture {
        let loop = EmbeddedEventLoop()
        let codec: RecordingCodec
        let stream: HTTPFilterStream
        let log = Log()
        let router: TerminalFilter

        init() {
            codec = RecordingCodec(loop: loop)
            let registry = StatsRegistry()
            let worker = Worker(eventLoop: loop, index: 0, registry: registry,
                                snapshot: ConfigSnapshot(version: 1, clusters: []), hosts: [])
            router = TerminalFilter(log)
            stream = HTTPFilterStream(codec: codec, worker: worker, router: router)
        }

        func begin(_ filters: [any HTTPFilterFactory], perFilter: PerFilterConfigs = PerFilterConfigs(),
                   hasBody: Bool = false, method: HTTPMethod = .GET) {
            stream.begin(factories: filters + [router], request: RouteRequest(method: method.rawValue, path: "/",
                                                                              authority: "a"),
                         route: .noRoute, perFilterConfig: perFilter, isHead: method == .HEAD, hasBody: hasBody)
        }

        func head(_ method: HTTPMethod = .POST) -> HTTPRequestHead {
            HTTPRequestHead(version: .http1_1, method: method, uri: "/")
        }
    }

    static func buffer(_ s: String) -> ByteBuffer { ByteBuffer(string: s) }

    @Test func decodersRunInOrderAndTheRouterSeesTheirChanges() {
        let f = Fixture()
        let a = ScriptedFilter("a", f.log), b = ScriptedFilter("b", f.log)
        f.begin([a, b])
        f.stream.decodeHeaders(f.head(), endStream: false)
        f.stream.decodeData(Self.buffer("x"), endStream: false)
        f.stream.decodeData(ByteBuffer(), endStream: true)
        #expect(f.log.lines == ["a:headers", "b:headers", "router:headers", "a:data x", "b:data x", "router:data x",
                                "a:data  end", "b:data  end", "router:data  end"])
        #expect(f.router.seenBy == ["a", "b"])
    }

    @Test func encodersRunInReverseOrderThenTheCodec() {
        let f = Fixture()
        let a = ScriptedFilter("a", f.log), b = ScriptedFilter("b", f.log)
        a.addResponseHeader = "x-by"
        b.addResponseHeader = "x-by"
        f.begin([a, b])
        f.stream.decodeHeaders(f.head(), endStream: false)
        f.log.lines.removeAll()
        f.stream.encodeHeaders(HTTPResponseHead(version: .http1_1, status: .ok), endStream: false)
        f.stream.encodeData(Self.buffer("body"), endStream: true)
        #expect(f.log.lines == ["b:encodeHeaders 200", "a:encodeHeaders 200", "b:encodeData body end",
                                "a:encodeData body end"])
        #expect(f.codec.events == ["codec:head 200", "codec:body body", "codec:end"])
        #expect(f.codec.heads.first?.headers["x-by"] == ["b", "a"])
    }

    @Test func stoppedHeadersHoldTheBodyUntilTheFilterContinues() {
        let f = Fixture()
        let a = ScriptedFilter("a", f.log), b = ScriptedFilter("b", f.log)
        a.onHeaders = { _ in .stopIteration }
        f.begin([a, b], hasBody: true)
        f.stream.decodeHeaders(f.head(), endStream: false)
        f.stream.decodeData(Self.buffer("one "), endStream: false)
        f.stream.decodeData(Self.buffer("two"), endStream: true)
        #expect(f.log.lines == ["a:headers"])
        #expect(f.stream.decodeHeld)
        f.stream.continueDecoding()
        // The held body follows the headers from the first filter, as one chunk with the end.
        #expect(f.log.lines == ["a:headers", "b:headers", "router:headers", "a:data one two end",
                                "b:data one two end", "router:data one two end"])
        #expect(!f.stream.decodeHeld)
        #expect(f.codec.resumed == 1)
    }

    @Test func aBufferingFilterPassesTheWholeBodyOnItsLastChunk() {
        let f = Fixture()
        let a = ScriptedFilter("a", f.log)
        a.onData = { _, end, _ in end ? .continue : .stopIterationAndBuffer }
        f.begin([a], hasBody: true)
        f.stream.decodeHeaders(f.head(), endStream: false)
        f.stream.decodeData(Self.buffer("1"), endStream: false)
        f.stream.decodeData(Self.buffer("2"), endStream: false)
        f.stream.decodeData(Self.buffer("3"), endStream: true)
        #expect(f.log.lines.filter { $0.hasPrefix("router:data") } == ["router:data 123 end"])
        #expect(f.log.lines.filter { $0.hasPrefix("a:data") } == ["a:data 1", "a:data 12", "a:data 123 end"])
    }

    @Test func aLocalReplyStopsDecodingAndPassesEveryEncoder() {
        let f = Fixture()
        let a = ScriptedFilter("a", f.log), b = ScriptedFilter("b", f.log), c = ScriptedFilter("c", f.log)
        b.onHeaders = { stream in
            stream.sendLocalReply(status: .forbidden, body: "denied")
            return .stopIteration
        }
        f.begin([a, b, c], hasBody: true)
        f.stream.decodeHeaders(f.head(), endStream: false)
        f.stream.decodeData(Self.buffer("late"), endStream: true)
        #expect(f.log.lines == ["a:headers", "b:headers", "c:encodeHeaders 403", "b:encodeHeaders 403",
                                "a:encodeHeaders 403", "c:encodeData denied end", "b:encodeData denied end",
                                "a:encodeData denied end"])
        #expect(f.codec.events == ["codec:head 403", "codec:body denied", "codec:end"])
        // The request still had its body to send: the connection closes after the reply (Envoy's HTTP/1 rule).
        #expect(f.codec.localReplies == [true])
    }

    @Test func aLocalReplyToHeadHasNoBodyButItsLength() {
        let f = Fixture()
        let a = ScriptedFilter("a", f.log)
        a.onHeaders = { stream in
            stream.sendLocalReply(status: .tooManyRequests, body: "local_rate_limited")
            return .stopIteration
        }
        f.begin([a], method: .HEAD)
        f.stream.decodeHeaders(f.head(.HEAD), endStream: false)
        #expect(f.codec.events == ["codec:head 429", "codec:end"])
        #expect(f.codec.heads.first?.headers.first(name: "content-length") == "18")
        #expect(f.codec.localReplies == [false])
    }

    @Test func aLocalReplyAfterTheResponseStartedResetsTheStream() {
        let f = Fixture()
        f.begin([])
        f.stream.decodeHeaders(f.head(), endStream: false)
        f.stream.encodeHeaders(HTTPResponseHead(version: .http1_1, status: .ok), endStream: false)
        f.stream.sendLocalReply(status: .gatewayTimeout, body: "upstream request timeout")
        #expect(f.codec.reset)
        #expect(f.codec.events == ["codec:head 200"])
    }

    @Test func timersOfAnEndedStreamNeverFire() {
        let f = Fixture()
        let a = ScriptedFilter("a", f.log)
        var fired = 0
        a.onHeaders = { stream in
            stream.schedule(in: .milliseconds(10)) { fired += 1 }
            return .stopIteration
        }
        f.begin([a])
        f.stream.decodeHeaders(f.head(), endStream: false)
        f.stream.end()
        f.loop.advanceTime(by: .milliseconds(20))
        #expect(fired == 0)
        #expect(f.log.lines == ["a:headers", "a:complete"])
    }

    @Test func perRouteConfigIsTheMostSpecific() {
        var p = PerFilterConfigs()
        p.routeConfiguration["f"] = PerRouteFilterConfig(config: "rc", disabled: false, typeURL: "t")
        p.virtualHost["f"] = PerRouteFilterConfig(config: "vh", disabled: false, typeURL: "t")
        #expect(p.lookup("f")?.config as? String == "vh")
        p.route["f"] = PerRouteFilterConfig(config: nil, disabled: true, typeURL: "t")
        #expect(p.lookup("f")?.disabled == true)
        #expect(p.lookup("g") == nil)
    }
}
