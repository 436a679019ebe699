import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import Testing

@testable import Sidecar

/// A downstream HTTP/2 stream's codec, frame by frame: requests, CONNECT, responses and what is held (the same
/// through the proxy on real sockets: HTTP2ProxyTests and scripts/e2e-http2, against Envoy too).
struct HTTP2StreamCodecTests {
    private func channel(extendedConnect: Bool = true) throws -> (EmbeddedChannel, HTTP2StreamCodec) {
        let codec = HTTP2StreamCodec(extendedConnect: extendedConnect)
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(codec)
        return (channel, codec)
    }

    private func headers(_ pairs: [(String, String)], endStream: Bool = false) -> HTTP2Frame.FramePayload {
        .headers(.init(headers: HPACKHeaders(pairs), endStream: endStream))
    }

    private func data(_ text: String, endStream: Bool = false) -> HTTP2Frame.FramePayload {
        .data(.init(data: .byteBuffer(ByteBuffer(string: text)), endStream: endStream))
    }

    private func readPart(_ channel: EmbeddedChannel) throws -> HTTPServerRequestPart? {
        try channel.readInbound(as: HTTPServerRequestPart.self)
    }

    private func readFrame(_ channel: EmbeddedChannel) throws -> HTTP2Frame.FramePayload? {
        try channel.readOutbound(as: HTTP2Frame.FramePayload.self)
    }

    @Test func aPostBecomesAnHTTP1RequestWithHostBodyAndTrailers() throws {
        let (channel, _) = try channel()
        try channel.writeInbound(headers([
            (":method", "POST"), (":scheme", "http"), (":path", "/upload?x=1"), (":authority", "api.local"),
            ("x-a", "1"),
        ]))
        guard case .head(let head)? = try readPart(channel) else {
            Issue.record("no request head")
            return
        }
        #expect(head.method == .POST && head.uri == "/upload?x=1" && head.version == .http2)
        // Host first (from :authority), then the body framing HTTP/1 needs, then the request's own fields.
        #expect(head.headers.map { $0.name } == ["host", "transfer-encoding", "x-a"])
        #expect(head.headers["host"] == ["api.local"])
        try channel.writeInbound(data("abc"))
        guard case .body(let body)? = try readPart(channel) else {
            Issue.record("no body")
            return
        }
        #expect(String(buffer: body) == "abc")
        try channel.writeInbound(headers([("grpc-status", "0")], endStream: true))
        guard case .end(let trailers?)? = try readPart(channel) else {
            Issue.record("no trailers")
            return
        }
        #expect(trailers["grpc-status"] == ["0"])
        // A third header block is not a request's: the stream's error.
        #expect(throws: HTTP2MessageTranslation.UnexpectedHeaderBlock.self) {
            try channel.writeInbound(headers([("x", "y")], endStream: true))
        }
        _ = try? channel.finish()
    }

    @Test func aRequestEndedWithItsHeadersSaysSo() throws {
        let (channel, _) = try channel()
        try channel.writeInbound(headers([
            (":method", "PUT"), (":scheme", "https"), (":path", "/"), (":authority", "a"), ("host", "b"),
        ], endStream: true))
        guard case .head(let head)? = try readPart(channel), case .end(nil)? = try readPart(channel) else {
            Issue.record("no head and end")
            return
        }
        // A host field of the request's own is kept and not doubled; an ended PUT says its length.
        #expect(head.headers["host"] == ["b"])
        #expect(head.headers["content-length"] == ["0"])
        // DATA ending a stream with nothing in it is just the end.
        let (second, _) = try self.channel()
        try second.writeInbound(headers([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")]))
        guard case .head(let get)? = try readPart(second) else {
            Issue.record("no GET head")
            return
        }
        #expect(!get.headers.contains(name: "content-length") && !get.headers.contains(name: "transfer-encoding"))
        try second.writeInbound(data("", endStream: true))
        guard case .end(nil)? = try readPart(second) else {
            Issue.record("no end")
            return
        }
        #expect(try readPart(second) == nil)
        _ = try channel.finish()
        _ = try second.finish()
    }

    @Test func aBlockThatBreaksRFC9113sRulesResetsTheStreamWithProtocolError() throws {
        let get: [(String, String)] = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")]
        let blocks: [(why: String, block: [(String, String)], extendedConnect: Bool)] = [
            ("a space in :path", [(":method", "GET"), (":scheme", "http"), (":path", "/a b"), (":authority", "a")], true),
            ("a control in :authority", [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a\u{1}")], true),
            ("two :method", [(":method", "GET")] + get, true),
            ("no :method", Array(get.dropFirst()), true),
            ("no :scheme", [(":method", "GET"), (":path", "/"), (":authority", "a")], true),
            ("an empty :path", [(":method", "GET"), (":scheme", "http"), (":path", ""), (":authority", "a")], true),
            ("an unknown pseudo-header", get + [(":foo", "x")], true),
            ("a pseudo-header after a field", [(":method", "GET"), ("x-a", "1"), (":scheme", "http"), (":path", "/"),
                                               (":authority", "a")], true),
            (":status in a request", get + [(":status", "200")], true),
            ("an upper-case name", get + [("X-Upper", "1")], true),
            ("a space in a name", get + [("x a", "1")], true),
            ("an empty name", get + [("", "1")], true),
            ("connection", get + [("connection", "close")], true),
            ("transfer-encoding", get + [("transfer-encoding", "chunked")], true),
            ("upgrade", get + [("upgrade", "websocket")], true),
            ("keep-alive", get + [("keep-alive", "5")], true),
            ("proxy-connection", get + [("proxy-connection", "x")], true),
            ("te other than trailers", get + [("te", "gzip")], true),
            ("a CR in a value", get + [("x-a", "1\r\nx-b: 2")], true),
            ("a NUL in a value", get + [("x-a", "1\u{0}")], true),
            ("CONNECT with :path", [(":method", "CONNECT"), (":path", "/"), (":authority", "a:1")], true),
            ("CONNECT without :authority", [(":method", "CONNECT")], true),
            (":protocol on a GET", get + [(":protocol", "websocket")], true),
            (":protocol not advertised", [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                                          (":path", "/"), (":authority", "a")], false),
        ]
        for (why, block, extendedConnect) in blocks {
            let (channel, _) = try channel(extendedConnect: extendedConnect)
            try channel.writeInbound(headers(block))
            #expect(try readPart(channel) == nil, "\(why)")
            guard case .rstStream(let code)? = try readFrame(channel) else {
                Issue.record("\(why): no RST_STREAM")
                continue
            }
            #expect(code == .protocolError, "\(why)")
            _ = try? channel.finish()
        }
        // What the rules allow passes: te: trailers, obs-text and tabs in values, a CONNECT with only its two.
        let (ok, _) = try channel()
        try ok.writeInbound(headers(get + [("te", "trailers"), ("x-a", "caf\u{e9}\tb")]))
        guard case .head(let head)? = try readPart(ok) else {
            Issue.record("a valid request was refused")
            return
        }
        #expect(head.headers["te"] == ["trailers"])
        _ = try ok.finish()
        // A request within the rules but without :authority is the translation's error (as NIOHTTP2's was).
        let (noAuthority, _) = try channel()
        #expect(throws: (any Error).self) {
            try noAuthority.writeInbound(headers([(":method", "GET"), (":scheme", "http"), (":path", "/")]))
        }
        _ = try? noAuthority.finish()
        // Trailers carry regular fields only.
        let (trailers, _) = try channel()
        try trailers.writeInbound(headers([(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "a")]))
        _ = try readPart(trailers)
        try trailers.writeInbound(headers([(":status", "200")], endStream: true))
        guard case .rstStream(.protocolError)? = try readFrame(trailers) else {
            Issue.record("a pseudo-header in trailers did not reset the stream")
            return
        }
        #expect(try readPart(trailers) == nil)
        _ = try? trailers.finish()
    }

    @Test func anExtendedConnectBecomesAnUpgradeAndItsAcceptanceA200() throws {
        let (channel, codec) = try channel()
        try channel.writeInbound(headers([
            (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"), (":path", "/chat"),
            (":authority", "example.com"), ("sec-websocket-version", "13"),
        ]))
        guard case .head(let head)? = try readPart(channel), case .end(nil)? = try readPart(channel) else {
            Issue.record("no ended upgrade request")
            return
        }
        // What an HTTP/1.1 upgrade request says, and ended: the stream's DATA belongs to the tunnel.
        #expect(head.method == .GET && head.uri == "/chat")
        #expect(head.headers["upgrade"] == ["websocket"] && head.headers["connection"] == ["upgrade"])
        #expect(head.headers["sec-websocket-version"] == ["13"] && head.headers["host"] == ["example.com"])
        #expect(codec.state == .connect(.extended))

        // DATA before the tunnel is held, and reads stop.
        try channel.writeInbound(data("early"))
        #expect(try channel.readInbound(as: HTTP2Frame.FramePayload.self) == nil)

        // The 101 goes down as a 200 without the HTTP/1 upgrade headers.
        var accept = HTTPHeaders()
        accept.add(name: "Upgrade", value: "websocket")
        accept.add(name: "Connection", value: "Upgrade")
        accept.add(name: "Sec-WebSocket-Accept", value: "abc")
        try channel.writeOutbound(HTTPServerResponsePart.head(.init(version: .http1_1, status: .switchingProtocols,
                                                                    headers: accept)))
        channel.flush()
        guard case .headers(let response)? = try readFrame(channel) else {
            Issue.record("no response HEADERS")
            return
        }
        #expect(response.headers.first(name: ":status") == "200" && !response.endStream)
        #expect(!response.headers.contains(name: "upgrade") && !response.headers.contains(name: "connection"))
        #expect(response.headers.first(name: "sec-websocket-accept") == "abc")

        // The tunnel starts: the held DATA goes on as frames, and later frames pass both ways.
        codec.releaseHeld()
        guard case .data(let early)? = try channel.readInbound(as: HTTP2Frame.FramePayload.self),
              case .byteBuffer(let bytes) = early.data else {
            Issue.record("the held DATA did not go on")
            return
        }
        #expect(String(buffer: bytes) == "early")
        try channel.writeInbound(data("later", endStream: true))
        guard case .data(let later)? = try channel.readInbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("DATA in the tunnel did not pass")
            return
        }
        #expect(later.endStream)
        try channel.writeOutbound(data("down"))
        guard case .data? = try readFrame(channel) else {
            Issue.record("the tunnel's frame did not pass")
            return
        }
        _ = try channel.finish()
    }

    @Test func aPlainConnectBecomesAnHTTP1ConnectForItsAuthority() throws {
        let (channel, codec) = try channel()
        try channel.writeInbound(headers([(":method", "CONNECT"), (":authority", "db.internal:5432"), ("x-a", "1")],
                                         endStream: true))
        guard case .head(let head)? = try readPart(channel), case .end(nil)? = try readPart(channel) else {
            Issue.record("no ended CONNECT")
            return
        }
        #expect(head.method == .CONNECT && head.uri == "db.internal:5432")
        #expect(head.headers.map { $0.name } == ["host", "x-a"])
        #expect(codec.state == .connect(.plain))
        // A CONNECT's 200 is not rewritten; the client's END_STREAM with its HEADERS waits as the tunnel's
        // half-close.
        try channel.writeOutbound(HTTPServerResponsePart.head(.init(version: .http1_1, status: .ok)))
        channel.flush()
        guard case .headers(let response)? = try readFrame(channel) else {
            Issue.record("no response")
            return
        }
        #expect(response.headers.first(name: ":status") == "200")
        codec.releaseHeld()
        guard case .data(let end)? = try channel.readInbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("the END_STREAM did not go on")
            return
        }
        #expect(end.endStream)
        _ = try channel.finish()
    }

    @Test func aResponseIsNormalizedAndEndsWithAnEmptyData() throws {
        let (channel, codec) = try channel()
        try channel.writeInbound(headers([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")],
                                         endStream: true))
        #expect(codec.state == .request(trailersSeen: false))
        var fields = HTTPHeaders()
        fields.add(name: "Content-Type", value: "text/plain")
        fields.add(name: "content-length", value: "5")
        fields.add(name: "Connection", value: "keep-alive, X-Hop")
        fields.add(name: "x-hop", value: "1")
        fields.add(name: "Keep-Alive", value: "timeout=5")
        fields.add(name: "transfer-encoding", value: "chunked")
        fields.add(name: "etag", value: "\"v1\"")
        fields.add(name: "x-envoy-upstream-service-time", value: "1")
        channel.write(HTTPServerResponsePart.head(.init(version: .http1_1, status: .ok, headers: fields)), promise: nil)
        // Held until the next part: nothing is out yet.
        #expect(try readFrame(channel) == nil)
        channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: "hello"))), promise: nil)
        channel.write(HTTPServerResponsePart.end(nil), promise: nil)
        channel.flush()
        guard case .headers(let head)? = try readFrame(channel), case .data(let body)? = try readFrame(channel),
              case .data(let end)? = try readFrame(channel) else {
            Issue.record("no HEADERS and DATA")
            return
        }
        #expect(Array(head.headers.map { $0.name }) == [
            ":status", "content-type", "content-length", "etag", "x-envoy-upstream-service-time",
        ])
        #expect(!head.endStream)
        // Values that change per message stay out of HPACK's dynamic table, as nghttp2 keeps them out.
        let indexing = Dictionary(uniqueKeysWithValues: head.headers.map { ($0.name, $0.indexable) })
        #expect(indexing["content-length"] == .nonIndexable && indexing["etag"] == .nonIndexable)
        #expect(indexing["content-type"] == .indexable)
        #expect(!body.endStream && end.endStream)
        guard case .byteBuffer(let bytes) = body.data, case .byteBuffer(let none) = end.data else { return }
        #expect(String(buffer: bytes) == "hello" && none.readableBytes == 0)
        #expect(try readFrame(channel) == nil)
        _ = try channel.finish()
    }

    @Test func aHeadersOnlyResponseIsOneHeaderBlockAndTrailersEndTheStream() throws {
        let (channel, _) = try channel()
        try channel.writeInbound(headers([(":method", "POST"), (":scheme", "http"), (":path", "/g"),
                                          (":authority", "a")]))
        var fields = HTTPHeaders()
        fields.add(name: "grpc-status", value: "12")
        fields.add(name: "content-length", value: "0")
        channel.write(HTTPServerResponsePart.head(.init(version: .http1_1, status: .ok, headers: fields)), promise: nil)
        channel.write(HTTPServerResponsePart.end(nil), promise: nil)
        channel.flush()
        guard case .headers(let only)? = try readFrame(channel) else {
            Issue.record("no HEADERS")
            return
        }
        // A gRPC trailers-only answer: one block that ends the stream (and without the translation's length).
        #expect(only.endStream && only.headers.first(name: "grpc-status") == "12")
        #expect(!only.headers.contains(name: "content-length"))
        #expect(try readFrame(channel) == nil)

        let (second, _) = try self.channel()
        try second.writeInbound(headers([(":method", "POST"), (":scheme", "http"), (":path", "/g"),
                                         (":authority", "a")]))
        try second.writeOutbound(HTTPServerResponsePart.head(.init(version: .http1_1, status: .ok)))
        try second.writeOutbound(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(string: "m"))))
        var trailers = HTTPHeaders()
        trailers.add(name: "Grpc-Status", value: "0")
        try second.writeOutbound(HTTPServerResponsePart.end(trailers))
        guard case .headers(let head)? = try readFrame(second), case .data(let body)? = try readFrame(second),
              case .headers(let end)? = try readFrame(second) else {
            Issue.record("no HEADERS, DATA, trailers")
            return
        }
        #expect(!head.endStream && !body.endStream && end.endStream)
        #expect(end.headers.first(name: "grpc-status") == "0")
        _ = try channel.finish()
        _ = try second.finish()
    }

    @Test func aResetDropsWhatIsHeldAndFailsItsPromise() throws {
        let (channel, codec) = try channel()
        try channel.writeInbound(headers([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")]))
        let promise = channel.eventLoop.makePromise(of: Void.self)
        channel.write(HTTPServerResponsePart.head(.init(version: .http1_1, status: .ok)), promise: promise)
        codec.reset(.refusedStream)
        guard case .rstStream(let code)? = try readFrame(channel) else {
            Issue.record("no RST_STREAM")
            return
        }
        #expect(code == .refusedStream)
        #expect(throws: ChannelError.self) { try promise.futureResult.wait() }
        #expect(try readFrame(channel) == nil)
        _ = try channel.finish()
    }
}
