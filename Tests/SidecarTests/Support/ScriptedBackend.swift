import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// An HTTP/1.1 upstream whose every answer the test scripts: status, headers, a body written chunk by chunk (each
/// chunk only after the previous one was written, so a big body streams with backpressure), and trailers. Without
/// a `content-length` the body goes chunked. Every request is recorded with its body.
final class ScriptedBackend: Sendable {
    struct Request: Sendable {
        var method: String
        var uri: String
        var headers: [(name: String, value: String)]
        var body: [UInt8]
        var trailers: [(name: String, value: String)] = []

        func header(_ name: String) -> String? {
            headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }
    }

    struct Response: Sendable {
        var status = 200
        var headers: [(String, String)] = []
        /// The body as `chunks` pieces made on demand (chunk `i` of `chunks`).
        var chunks = 0
        var chunk: @Sendable (Int) -> [UInt8] = { _ in [] }
        var trailers: [(String, String)]?
        /// Called (on the backend's loop) before chunk `i` is written; returning false pauses until `resume()`.
        var gate: (@Sendable (Int) -> Bool)?

        init(status: Int = 200, headers: [(String, String)] = [], body: [UInt8] = [],
             trailers: [(String, String)]? = nil) {
            self.status = status
            self.headers = headers
            self.trailers = trailers
            if !body.isEmpty {
                chunks = 1
                chunk = { _ in body }
            }
        }

        init(status: Int = 200, headers: [(String, String)] = [], chunks: Int, chunk: @escaping @Sendable (Int) -> [UInt8]) {
            self.status = status
            self.headers = headers
            self.chunks = chunks
            self.chunk = chunk
        }
    }

    let port: Int
    private let recorded = NIOLockedValueBox<[Request]>([])
    private let paused = NIOLockedValueBox<(@Sendable () -> Void)?>(nil)
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel

    init(_ respond: @escaping @Sendable (Request) -> Response) throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let recorded = recorded
        let paused = paused
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(
                            ScriptedHandler(respond: respond, recorded: recorded, paused: paused))
                    }
                }
                .bind(host: "127.0.0.1", port: 0)
                .wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        self.group = group
        port = channel.localAddress?.port ?? 0
    }

    var requests: [Request] { recorded.withLockedValue { $0 } }
    var lastRequest: Request? { requests.last }

    /// Lets a body held by its response's `gate` go on.
    func resume() {
        let go = paused.withLockedValue { p -> (@Sendable () -> Void)? in
            defer { p = nil }
            return p
        }
        go?()
    }

    func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

private final class ScriptedHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let respond: @Sendable (ScriptedBackend.Request) -> ScriptedBackend.Response
    let recorded: NIOLockedValueBox<[ScriptedBackend.Request]>
    let paused: NIOLockedValueBox<(@Sendable () -> Void)?>
    private var request: ScriptedBackend.Request?
    private var version = HTTPVersion.http1_1

    init(respond: @escaping @Sendable (ScriptedBackend.Request) -> ScriptedBackend.Response,
         recorded: NIOLockedValueBox<[ScriptedBackend.Request]>, paused: NIOLockedValueBox<(@Sendable () -> Void)?>) {
        self.respond = respond
        self.recorded = recorded
        self.paused = paused
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            version = head.version
            request = .init(method: head.method.rawValue, uri: head.uri,
                            headers: head.headers.map { ($0.name, $0.value) }, body: [])
        case .body(var buffer):
            request?.body += buffer.readBytes(length: buffer.readableBytes) ?? []
        case .end(let trailers):
            guard var request else { return }
            self.request = nil
            request.trailers = trailers.map { $0.map { ($0.name, $0.value) } } ?? []
            recorded.withLockedValue { $0.append(request) }
            var response = respond(request)
            // A response to HEAD carries no body (NIO refuses to write one).
            if request.method == "HEAD" { response.chunks = 0 }
            var headers = HTTPHeaders()
            for (n, v) in response.headers { headers.add(name: n, value: v) }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(
                version: version, status: HTTPResponseStatus(statusCode: response.status), headers: headers))),
                promise: nil)
            writeChunk(0, response, context)
        }
    }

    /// Writes chunk `i`, and the next once it is written (or `end` after the last).
    private func writeChunk(_ i: Int, _ response: ScriptedBackend.Response, _ context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        if i >= response.chunks {
            var trailers: HTTPHeaders?
            if let t = response.trailers {
                trailers = HTTPHeaders()
                for (n, v) in t { trailers!.add(name: n, value: v) }
            }
            context.writeAndFlush(wrapOutboundOut(.end(trailers)), promise: nil)
            return
        }
        if let gate = response.gate, !gate(i) {
            let loop = context.eventLoop
            let ctx = NIOLoopBound(context, eventLoop: loop)
            let me = NIOLoopBound(self, eventLoop: loop)
            paused.withLockedValue {
                $0 = { loop.execute { me.value.writeChunk(i, Self.ungated(response), ctx.value) } }
            }
            context.flush()
            return
        }
        let bytes = response.chunk(i)
        let buffer = context.channel.allocator.buffer(bytes: bytes)
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buffer)))).assumeIsolated().whenSuccess { [self] in
            writeChunk(i + 1, response, context)
        }
    }

    private static func ungated(_ r: ScriptedBackend.Response) -> ScriptedBackend.Response {
        var r = r
        r.gate = nil
        return r
    }
}

@available(*, unavailable) extension ScriptedHandler: Sendable {}
