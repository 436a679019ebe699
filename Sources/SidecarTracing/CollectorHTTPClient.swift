import NIOCore
import NIOHTTP1
import NIOPosix

/// One keep-alive HTTP/1.1 connection to a span collector, used by one exporter on its own event loop: a POST at
/// a time (the exporter never has two reports in flight), reconnecting when the collector closed it or failed.
/// The collector's address is asked for per report, so a changed cluster host is picked up.
///
/// The request line and headers are the same for every report: they are encoded once, and a report is two
/// buffers (head, body) in one write, straight to the socket. NIO's response decoder parses the answer; it is
/// told of each request as NIO's request encoder would tell it.
///
/// Confined to `loop` (every entry point asserts it, every callback runs there): hence `@unchecked Sendable`.
final class CollectorHTTPClient: @unchecked Sendable {
    private let loop: EventLoop
    private let resolve: @Sendable () -> SocketAddress?
    private var channel: Channel?
    private var connectedTo: SocketAddress?
    /// Where reports are written from: the handler next to the socket.
    private var writer: ChannelHandlerContext?
    private var decoder: HTTPResponseDecoder?
    private var responses: CollectorResponseHandler?
    /// `POST path HTTP/1.1`, the headers, and `content-length: ` waiting for its value.
    private let headPrefix: ByteBuffer
    private let head: HTTPRequestHead

    init(loop: EventLoop, path: String, host: String, headers extra: [(String, String)], contentType: String,
         resolve: @escaping @Sendable () -> SocketAddress?) {
        self.loop = loop
        self.resolve = resolve
        var headers = HTTPHeaders()
        headers.add(name: "host", value: host)
        headers.add(name: "content-type", value: contentType)
        for (n, v) in extra { headers.add(name: n, value: v) }
        head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path, headers: headers)
        var prefix = ByteBuffer()
        prefix.writeString("POST \(path) HTTP/1.1\r\n")
        for (n, v) in headers {
            prefix.writeString(n)
            prefix.writeStaticString(": ")
            prefix.writeString(v)
            prefix.writeStaticString("\r\n")
        }
        prefix.writeStaticString("content-length: ")
        headPrefix = prefix
    }

    /// POSTs `body` and succeeds with the response status, or fails (no host, connect error, timeout, reset).
    func post(body: ByteBuffer, timeout: TimeAmount) -> EventLoopFuture<Int> {
        loop.assertInEventLoop()
        guard let address = resolve() else { return loop.makeFailedFuture(CollectorError.noHost) }
        let promise = loop.makePromise(of: Int.self)
        let timer = loop.scheduleTask(in: timeout) { [weak self] in
            promise.fail(CollectorError.timeout)
            self?.reset()
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        connection(to: address, timeout: timeout).whenComplete { [weak self] result in
            guard let self else { return promise.fail(CollectorError.closed) }
            switch result {
            case .failure(let error):
                promise.fail(error)
            case .success:
                guard let writer = self.writer, let decoder = self.decoder, let responses = self.responses else {
                    self.reset()
                    return promise.fail(CollectorError.closed)
                }
                responses.expect(promise)
                decoder.write(data: .head(self.head))
                var head = self.headPrefix
                head.writeString(String(body.readableBytes))
                head.writeStaticString("\r\n\r\n")
                writer.write(NIOAny(head), promise: nil)
                let written = writer.eventLoop.makePromise(of: Void.self)
                writer.writeAndFlush(NIOAny(body), promise: written)
                written.futureResult.whenFailure { [weak self] error in
                    promise.fail(error)
                    self?.reset()
                }
            }
        }
        return promise.futureResult
    }

    private func connection(to address: SocketAddress, timeout: TimeAmount) -> EventLoopFuture<Channel> {
        if let channel, channel.isActive, connectedTo == address { return loop.makeSucceededFuture(channel) }
        reset()
        // The decoder is kept to be told of each request (it pairs responses with requests, as HEAD has none).
        let decoder = NIOLoopBound(HTTPResponseDecoder(), eventLoop: loop)
        return ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    try ops.addHandler(CollectorRequestWriter())
                    try ops.addHandler(ByteToMessageHandler(decoder.value))
                    try ops.addHandler(CollectorResponseHandler())
                }
            }
            .connect(to: address)
            .flatMapThrowing { [weak self] channel in
                guard let self else { throw CollectorError.closed }
                let ops = channel.pipeline.syncOperations
                self.writer = try ops.context(handlerType: CollectorRequestWriter.self)
                self.responses = try ops.handler(type: CollectorResponseHandler.self)
                self.decoder = decoder.value
                self.channel = channel
                self.connectedTo = address
                return channel
            }
    }

    func reset() {
        channel?.close(promise: nil)
        channel = nil
        connectedTo = nil
        writer = nil
        decoder = nil
        responses = nil
    }
}

/// The handler next to the socket: reports are written from its context, so they go out as bytes and pass no
/// HTTP encoder.
private final class CollectorRequestWriter: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
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
