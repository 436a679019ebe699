import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import Testing

@testable import Sidecar

/// The HTTP/2 CONNECT translation on a stream's pipeline, frame by frame (the tunnels themselves are proven
/// through the proxy in scripts/e2e-http2's h2_* scenarios, against Envoy too).
struct HTTP2ConnectTranslationTests {
    private func channel() throws -> (EmbeddedChannel, HTTP2ConnectTranslation) {
        let translation = HTTP2ConnectTranslation()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(translation)
        return (channel, translation)
    }

    private func headers(_ pairs: [(String, String)], endStream: Bool = false) -> HTTP2Frame.FramePayload {
        .headers(.init(headers: HPACKHeaders(pairs), endStream: endStream))
    }

    private func data(_ text: String, endStream: Bool = false) -> HTTP2Frame.FramePayload {
        .data(.init(data: .byteBuffer(ByteBuffer(string: text)), endStream: endStream))
    }

    @Test func anExtendedConnectBecomesAnUpgradeAndItsAcceptanceA200() throws {
        let (channel, translation) = try channel()
        try channel.writeInbound(headers([
            (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"), (":path", "/chat"),
            (":authority", "example.com"), ("sec-websocket-version", "13"),
        ]))
        guard case .headers(let request)? = try channel.readInbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("no request HEADERS")
            return
        }
        // What an HTTP/1.1 upgrade request says, and ended: the stream's DATA belongs to the tunnel.
        #expect(request.endStream)
        #expect(request.headers.first(name: ":method") == "GET")
        #expect(request.headers.first(name: ":path") == "/chat")
        #expect(!request.headers.contains(name: ":protocol"))
        #expect(request.headers.first(name: "upgrade") == "websocket")
        #expect(request.headers.first(name: "connection") == "upgrade")
        #expect(request.headers.first(name: "sec-websocket-version") == "13")
        #expect(translation.state == .connect(extended: true))

        // DATA before the tunnel is held, not passed to the HTTP/1 translation.
        try channel.writeInbound(data("early"))
        #expect(try channel.readInbound(as: HTTP2Frame.FramePayload.self) == nil)

        // The 101 goes down as a 200 without the HTTP/1 upgrade headers.
        try channel.writeOutbound(headers([(":status", "101"), ("upgrade", "websocket"), ("connection", "Upgrade"),
                                           ("sec-websocket-accept", "abc")]))
        guard case .headers(let response)? = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("no response HEADERS")
            return
        }
        #expect(response.headers.first(name: ":status") == "200")
        #expect(!response.headers.contains(name: "upgrade") && !response.headers.contains(name: "connection"))
        #expect(response.headers.first(name: "sec-websocket-accept") == "abc")

        // The tunnel starts: the held DATA goes on, and later DATA passes.
        translation.releaseHeld()
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
        _ = try channel.finish()
    }

    @Test func aPlainConnectBecomesAnHTTP1ConnectForItsAuthority() throws {
        let (channel, translation) = try channel()
        try channel.writeInbound(headers([(":method", "CONNECT"), (":authority", "db.internal:5432"), ("x-a", "1")],
                                         endStream: true))
        guard case .headers(let request)? = try channel.readInbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("no request HEADERS")
            return
        }
        #expect(request.headers.first(name: ":method") == "CONNECT")
        #expect(request.headers.first(name: ":path") == "db.internal:5432")
        #expect(request.headers.first(name: ":authority") == "db.internal:5432")
        #expect(request.headers.first(name: "x-a") == "1")
        #expect(translation.state == .connect(extended: false))
        // A CONNECT's 200 is not rewritten; the client's END_STREAM with its HEADERS waits as the tunnel's
        // half-close.
        try channel.writeOutbound(headers([(":status", "200")]))
        guard case .headers(let response)? = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("no response")
            return
        }
        #expect(response.headers.first(name: ":status") == "200")
        translation.releaseHeld()
        guard case .data(let end)? = try channel.readInbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("the END_STREAM did not go on")
            return
        }
        #expect(end.endStream)
        _ = try channel.finish()
    }

    @Test func otherRequestsPassUntouched() throws {
        let (channel, translation) = try channel()
        let get = headers([(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "a")])
        try channel.writeInbound(get)
        guard case .headers(let passed)? = try channel.readInbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("the GET did not pass")
            return
        }
        #expect(passed.headers.first(name: ":method") == "GET" && !passed.endStream)
        try channel.writeInbound(data("body", endStream: true))
        #expect(try channel.readInbound(as: HTTP2Frame.FramePayload.self) != nil)
        try channel.writeOutbound(headers([(":status", "101")]))
        guard case .headers(let response)? = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else {
            Issue.record("no response")
            return
        }
        #expect(response.headers.first(name: ":status") == "101")
        #expect(translation.state == .plain)
        _ = try channel.finish()
    }
}
