import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// An in-process HTTP/1.1 upstream for integration tests, on 127.0.0.1 and a port the kernel picks.
///
/// Behaviour by path (query strings are ignored except where noted):
/// - `/echo`: 200, the request body streamed back as it arrives (chunked).
/// - `/slow?ms=N`: "Hello from service!" after N milliseconds.
/// - `/reset`: a head promising `content-length: 1000`, 10 bytes of body, then the connection closes.
/// - `/close`: the connection closes without an answer.
/// - `/close-after`: "Hello from service!" with `connection: close`, then the connection closes.
/// - `/status/NNN`: status NNN with body `status NNN` (no body for 1xx, 204, 304).
/// - anything else (`/service` included): 200 "Hello from service!".
///
/// Every count and the last request head are readable from any thread.
final class TestBackend: Sendable {
    static let helloBody = "Hello from service!"

    struct RecordedHead: Sendable {
        var method: String
        var uri: String
        var headers: [(name: String, value: String)]

        func header(_ name: String) -> String? {
            headers.first { $0.name.lowercased() == name.lowercased() }?.value
        }
        func headerValues(_ name: String) -> [String] {
            headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
        }
    }

    struct State: Sendable {
        var acceptedConnections = 0
        var closedConnections = 0
        var requests = 0
        var heads: [RecordedHead] = []
    }

    let port: Int
    let state: NIOLockedValueBox<State>
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel

    init() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let state = NIOLockedValueBox(State())
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.backlog, value: 256)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        state.withLockedValue { $0.acceptedConnections += 1 }
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(BackendHandler(state: state))
                    }
                }
                .bind(host: "127.0.0.1", port: 0)
                .wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        self.group = group
        self.state = state
        self.port = channel.localAddress?.port ?? 0
    }

    var acceptedConnections: Int { state.withLockedValue { $0.acceptedConnections } }
    var closedConnections: Int { state.withLockedValue { $0.closedConnections } }
    var requestCount: Int { state.withLockedValue { $0.requests } }
    var lastHead: RecordedHead? { state.withLockedValue { $0.heads.last } }
    var heads: [RecordedHead] { state.withLockedValue { $0.heads } }

    /// Closes the listener and every connection. Safe to call more than once.
    func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// One backend connection. Requests arrive one at a time (the pipeline handler serialises them).
private final class BackendHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum Mode {
        case hello
        case echo
        case slow(milliseconds: Int64)
        case reset
        case close
        case closeAfter
        case status(Int)
    }

    private let state: NIOLockedValueBox<TestBackend.State>
    private var mode = Mode.hello
    private var keepAlive = true
    private var isHead = false
    private var version = HTTPVersion.http1_1

    init(state: NIOLockedValueBox<TestBackend.State>) { self.state = state }

    func channelInactive(context: ChannelHandlerContext) {
        state.withLockedValue { $0.closedConnections += 1 }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            let recorded = TestBackend.RecordedHead(
                method: head.method.rawValue, uri: head.uri, headers: head.headers.map { ($0.name, $0.value) })
            state.withLockedValue {
                $0.requests += 1
                $0.heads.append(recorded)
            }
            keepAlive = head.isKeepAlive
            isHead = head.method == .HEAD
            version = head.version
            mode = Self.mode(for: head.uri)
            if case .echo = mode {
                var headers = HTTPHeaders()
                headers.add(name: "transfer-encoding", value: "chunked")
                if !keepAlive { headers.add(name: "connection", value: "close") }
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: .ok, headers: headers))),
                                      promise: nil)
            }
        case .body(let buffer):
            if case .echo = mode {
                context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            }
        case .end:
            requestEnded(context: context)
        }
    }

    private func requestEnded(context: ChannelHandlerContext) {
        switch mode {
        case .hello:
            respond(context: context, status: .ok, body: TestBackend.helloBody)
        case .echo:
            let keepAlive = self.keepAlive
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                if !keepAlive { context.close(promise: nil) }
            }
        case .slow(let ms):
            context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(ms)) { [self] in
                guard context.channel.isActive else { return }
                respond(context: context, status: .ok, body: TestBackend.helloBody)
            }
        case .reset:
            var headers = HTTPHeaders()
            headers.add(name: "content-length", value: "1000")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: .ok, headers: headers))), promise: nil)
            let tenBytes = context.channel.allocator.buffer(repeating: UInt8(ascii: "x"), count: 10)
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(tenBytes)))).assumeIsolated().whenComplete { _ in
                context.close(promise: nil)
            }
        case .close:
            context.close(promise: nil)
        case .closeAfter:
            keepAlive = false
            respond(context: context, status: .ok, body: TestBackend.helloBody)
        case .status(let code):
            let hasBody = code >= 200 && code != 204 && code != 304
            respond(context: context, status: HTTPResponseStatus(statusCode: code), body: hasBody ? "status \(code)" : nil)
        }
    }

    private func respond(context: ChannelHandlerContext, status: HTTPResponseStatus, body: String?) {
        var headers = HTTPHeaders()
        if let body { headers.add(name: "content-length", value: String(body.utf8.count)) }
        headers.add(name: "content-type", value: "text/plain")
        if !keepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        if let body, !isHead {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        let keepAlive = self.keepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }

    private static func mode(for uri: String) -> Mode {
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = parts.first.map(String.init) ?? uri
        let query = parts.count > 1 ? String(parts[1]) : ""
        switch path {
        case "/echo":
            return .echo
        case "/slow":
            var ms: Int64 = 1000
            for item in query.split(separator: "&") where item.hasPrefix("ms=") {
                ms = Int64(item.dropFirst(3)) ?? ms
            }
            return .slow(milliseconds: ms)
        case "/reset":
            return .reset
        case "/close":
            return .close
        case "/close-after":
            return .closeAfter
        default:
            if path.hasPrefix("/status/"), let code = Int(path.dropFirst("/status/".count)), (100...599).contains(code) {
                return .status(code)
            }
            return .hello
        }
    }
}

@available(*, unavailable) extension BackendHandler: Sendable {}
