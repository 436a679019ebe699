import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix

/// What one HTTP/2 stream received, frame by frame.
struct H2StreamResult: Sendable {
    var headerBlocks: [(fields: [(String, String)], endStream: Bool)] = []
    var data: [UInt8] = []
    var dataFrames = 0
    var reset: HTTP2ErrorCode?

    var status: Int? { headerBlocks.first?.fields.first { $0.0 == ":status" }.flatMap { Int($0.1) } }
    func header(_ name: String) -> String? { headerBlocks.first?.fields.first { $0.0 == name }?.1 }
    /// The trailers: a second header block, or the only one when it ended the stream (trailers-only).
    func trailer(_ name: String) -> String? { headerBlocks.last?.fields.first { $0.0 == name }?.1 }
    var body: String { String(decoding: data, as: UTF8.self) }
}

/// An HTTP/2 client with prior knowledge (h2c), frame-level, for tests: each request is a stream whose frames are
/// recorded as they arrive, so a test can tell a trailers-only response (one HEADERS frame ending the stream)
/// from a head followed by an empty DATA frame. Root-stream frames (GOAWAY) are recorded too.
final class H2TestClient: @unchecked Sendable {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel: Channel
    private let multiplexer: NIOHTTP2Handler.StreamMultiplexer
    private let root: RootFrames

    final class RootFrames: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTP2Frame
        let goAway = NIOLockedValueBox<(lastStreamID: HTTP2StreamID, code: HTTP2ErrorCode)?>(nil)
        let closed = NIOLockedValueBox(false)
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .goAway(let last, let code, _) = unwrapInboundIn(data).payload { goAway.withLockedValue { $0 = (last, code) } }
        }
        func channelInactive(context: ChannelHandlerContext) {
            closed.withLockedValue { $0 = true }
            context.fireChannelInactive()
        }
    }

    init(port: Int) throws {
        let root = RootFrames()
        self.root = root
        let muxBox = NIOLockedValueBox<NIOHTTP2Handler.StreamMultiplexer?>(nil)
        let bootstrap = ClientBootstrap(group: group).channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                let mux = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                    mode: .client, connectionConfiguration: .init(), streamConfiguration: .init()
                ) { $0.eventLoop.makeSucceededVoidFuture() }
                try channel.pipeline.syncOperations.addHandler(root)
                muxBox.withLockedValue { $0 = mux }
            }
        }
        let channel = try bootstrap.connect(host: "127.0.0.1", port: port).wait()
        guard let mux = muxBox.withLockedValue({ $0 }) else { throw ChannelError.inappropriateOperationForState }
        self.channel = channel
        self.multiplexer = mux
    }

    var goAway: (lastStreamID: HTTP2StreamID, code: HTTP2ErrorCode)? { root.goAway.withLockedValue { $0 } }
    var isClosed: Bool { root.closed.withLockedValue { $0 } }

    final class StreamRecorder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTP2Frame.FramePayload
        let result = NIOLockedValueBox(H2StreamResult())
        let done: EventLoopPromise<H2StreamResult>
        init(done: EventLoopPromise<H2StreamResult>) { self.done = done }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .headers(let h):
                result.withLockedValue { $0.headerBlocks.append((h.headers.map { ($0.name, $0.value) }, h.endStream)) }
            case .data(let d):
                if case .byteBuffer(let b) = d.data {
                    result.withLockedValue { r in
                        r.data += b.readableBytesView
                        r.dataFrames += 1
                    }
                }
            case .rstStream(let code):
                result.withLockedValue { $0.reset = code }
            default:
                break
            }
        }
        func channelInactive(context: ChannelHandlerContext) {
            done.succeed(result.withLockedValue { $0 })
            context.fireChannelInactive()
        }
    }

    /// Sends one request (`headers` after the pseudo-headers) and returns a future of what came back once the
    /// stream closed.
    func request(_ method: String = "GET", _ path: String, authority: String = "example.com",
                 headers: [(String, String)] = [], body: [UInt8]? = nil) -> EventLoopFuture<H2StreamResult> {
        let done = channel.eventLoop.makePromise(of: H2StreamResult.self)
        let streamPromise = channel.eventLoop.makePromise(of: Channel.self)
        multiplexer.createStreamChannel(promise: streamPromise) { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandler(StreamRecorder(done: done))
            }
        }
        streamPromise.futureResult.whenComplete { result in
            switch result {
            case .failure(let e): done.fail(e)
            case .success(let stream):
                var fields = HPACKHeaders([(":method", method), (":path", path), (":scheme", "http"),
                                           (":authority", authority)])
                for (n, v) in headers { fields.add(name: n, value: v) }
                let hasBody = body != nil
                stream.write(HTTP2Frame.FramePayload.headers(.init(headers: fields, endStream: !hasBody)), promise: nil)
                if let body {
                    var b = stream.allocator.buffer(capacity: body.count)
                    b.writeBytes(body)
                    stream.write(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(b), endStream: true)), promise: nil)
                }
                stream.flush()
            }
        }
        return done.futureResult
    }

    /// Waits for one request's result.
    func get(_ path: String, headers: [(String, String)] = []) throws -> H2StreamResult {
        try request("GET", path, headers: headers).wait()
    }

    func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// An HTTP/2 (h2c) upstream for tests. Every stream is answered by `respond` with a status, headers, a body and
/// optional trailers; `trailersOnly` answers with one HEADERS frame that ends the stream (a gRPC error). It counts
/// the connections and streams it served and records each request's headers.
final class H2TestBackend: @unchecked Sendable {
    struct Response: Sendable {
        var status = 200
        var headers: [(String, String)] = []
        var body: [UInt8] = []
        var trailers: [(String, String)]?
        var trailersOnly = false
        var delay: TimeAmount = .zero
        /// Answer with RST_STREAM and this code instead.
        var reset: HTTP2ErrorCode?
    }

    let port: Int
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel: Channel
    let connections = NIOLockedValueBox(0)
    let requests = NIOLockedValueBox<[[(String, String)]]>([])
    /// Streams open at once, at most (per the server's view).
    let maxOpen = NIOLockedValueBox(0)
    private let open = NIOLockedValueBox(0)

    final class StreamHandler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTP2Frame.FramePayload
        typealias OutboundOut = HTTP2Frame.FramePayload
        let backend: H2TestBackend
        let respond: @Sendable ([(String, String)]) -> Response
        var head: [(String, String)] = []
        init(backend: H2TestBackend, respond: @escaping @Sendable ([(String, String)]) -> Response) {
            self.backend = backend
            self.respond = respond
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .headers(let h):
                if head.isEmpty { head = h.headers.map { ($0.name, $0.value) } }
                if h.endStream { answer(context) }
            case .data(let d):
                if d.endStream { answer(context) }
            default:
                break
            }
        }
        private func answer(_ context: ChannelHandlerContext) {
            backend.requests.withLockedValue { $0.append(head) }
            let r = respond(head)
            let send = {
                if let code = r.reset {
                    context.writeAndFlush(NIOAny(HTTP2Frame.FramePayload.rstStream(code)), promise: nil)
                    return
                }
                var fields = HPACKHeaders([(":status", String(r.status))])
                for (n, v) in r.headers { fields.add(name: n, value: v) }
                if r.trailersOnly {
                    context.writeAndFlush(NIOAny(HTTP2Frame.FramePayload.headers(.init(headers: fields, endStream: true))), promise: nil)
                    return
                }
                context.write(NIOAny(HTTP2Frame.FramePayload.headers(.init(headers: fields))), promise: nil)
                var b = context.channel.allocator.buffer(capacity: r.body.count)
                b.writeBytes(r.body)
                let endWithData = r.trailers == nil
                context.write(NIOAny(HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(b), endStream: endWithData))), promise: nil)
                if let trailers = r.trailers {
                    context.write(NIOAny(HTTP2Frame.FramePayload.headers(.init(headers: HPACKHeaders(trailers), endStream: true))), promise: nil)
                }
                context.flush()
            }
            if r.delay == .zero { send() } else { context.eventLoop.scheduleTask(in: r.delay) { send() } }
        }
        func channelActive(context: ChannelHandlerContext) {
            let n = backend.open.withLockedValue { $0 += 1; return $0 }
            backend.maxOpen.withLockedValue { $0 = max($0, n) }
            context.fireChannelActive()
        }
        func channelInactive(context: ChannelHandlerContext) {
            backend.open.withLockedValue { $0 -= 1 }
            context.fireChannelInactive()
        }
    }

    init(_ respond: @escaping @Sendable ([(String, String)]) -> Response = { _ in Response(body: Array("h2 hello".utf8)) }) throws {
        let box = NIOLockedValueBox<H2TestBackend?>(nil)
        let connections = self.connections
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                connections.withLockedValue { $0 += 1 }
                return channel.eventLoop.makeCompletedFuture {
                    _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .server, connectionConfiguration: .init(), streamConfiguration: .init()
                    ) { stream in
                        stream.eventLoop.makeCompletedFuture {
                            try stream.pipeline.syncOperations.addHandler(
                                StreamHandler(backend: box.withLockedValue { $0! }, respond: respond))
                        }
                    }
                }
            }
        channel = try bootstrap.bind(host: "127.0.0.1", port: 0).wait()
        port = channel.localAddress?.port ?? 0
        box.withLockedValue { $0 = self }
    }

    func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}
