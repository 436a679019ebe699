import NIOCore
import NIOHTTP1
import NIOPosix

/// One keep-alive HTTP/1.1 connection to a span collector, used by one exporter on its own event loop: a POST at
/// a time (the exporter never has two reports in flight), reconnecting when the collector closed it or failed.
/// The collector's address is asked for per report, so a changed cluster host is picked up.
final class CollectorHTTPClient {
    private let loop: EventLoop
    private let resolve: @Sendable () -> SocketAddress?
    private var channel: Channel?
    private var connectedTo: SocketAddress?

    init(loop: EventLoop, resolve: @escaping @Sendable () -> SocketAddress?) {
        self.loop = loop
        self.resolve = resolve
    }

    /// POSTs `body` and succeeds with the response status, or fails (no host, connect error, timeout, reset).
    func post(path: String, host: String, headers extra: [(String, String)], contentType: String, body: ByteBuffer,
              timeout: TimeAmount) -> EventLoopFuture<Int> {
        loop.assertInEventLoop()
        guard let address = resolve() else { return loop.makeFailedFuture(CollectorError.noHost) }
        let promise = loop.makePromise(of: Int.self)
        let timer = loop.scheduleTask(in: timeout) { [weak self] in
            promise.fail(CollectorError.timeout)
            self?.reset()
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        connection(to: address, timeout: timeout).whenComplete { [weak self] result in
            switch result {
            case .failure(let error):
                promise.fail(error)
            case .success(let channel):
                guard let self else { return promise.fail(CollectorError.closed) }
                var headers = HTTPHeaders()
                headers.add(name: "host", value: host)
                headers.add(name: "content-type", value: contentType)
                headers.add(name: "content-length", value: String(body.readableBytes))
                for (n, v) in extra { headers.add(name: n, value: v) }
                guard let handler = try? channel.pipeline.syncOperations.handler(type: CollectorResponseHandler.self)
                else {
                    self.reset()
                    return promise.fail(CollectorError.closed)
                }
                handler.expect(promise)
                channel.write(HTTPClientRequestPart.head(
                    HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: headers)), promise: nil)
                channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
                channel.writeAndFlush(HTTPClientRequestPart.end(nil)).whenFailure { error in
                    promise.fail(error)
                    self.reset()
                }
            }
        }
        return promise.futureResult
    }

    private func connection(to address: SocketAddress, timeout: TimeAmount) -> EventLoopFuture<Channel> {
        if let channel, channel.isActive, connectedTo == address { return loop.makeSucceededFuture(channel) }
        reset()
        return ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(CollectorResponseHandler())
                }
            }
            .connect(to: address)
            .map { [weak self] channel in
                self?.channel = channel
                self?.connectedTo = address
                return channel
            }
    }

    func reset() {
        channel?.close(promise: nil)
        channel = nil
        connectedTo = nil
    }
}

enum CollectorError: Error, CustomStringConvertible {
    case noHost, timeout, closed
    case status(Int)

    var description: String {
        switch self {
        case .noHost: "the collector cluster has no host"
        case .timeout: "the collector did not answer in time"
        case .closed: "the collector closed the connection"
        case .status(let s): "the collector answered \(s)"
        }
    }
}

/// Completes the request's promise with the response status when the response has ended (its body dropped).
private final class CollectorResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    private var promise: EventLoopPromise<Int>?
    private var status = 0

    func expect(_ promise: EventLoopPromise<Int>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            if head.headers.first(name: "connection")?.lowercased() == "close" { closeAfter = true }
        case .body:
            break
        case .end:
            let p = promise
            promise = nil
            p?.succeed(status)
            if closeAfter { context.close(promise: nil) }
        }
    }

    private var closeAfter = false

    func channelInactive(context: ChannelHandlerContext) {
        promise?.fail(CollectorError.closed)
        promise = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        promise?.fail(error)
        promise = nil
        context.close(promise: nil)
    }
}
