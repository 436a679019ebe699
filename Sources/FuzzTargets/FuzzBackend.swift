import NIOCore
import NIOHTTP1
import NIOPosix

/// The upstream of the in-process proxy the HTTP fuzz targets drive: an HTTP/1.1 server on loopback that reads
/// each request whole and answers it by its path, so the proxy's response paths (content-length, chunked with
/// trailers, 5xx for retries, close after the response) all get inputs.
final class FuzzBackend {
    let channel: Channel

    init(group: EventLoopGroup) throws {
        channel = try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(Responder())
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .wait()
    }

    var port: Int { channel.localAddress?.port ?? 0 }

    private final class Responder: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        private var head: HTTPRequestHead?
        private var received = 0

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h):
                head = h
                received = 0
            case .body(let b):
                received += b.readableBytes
            case .end:
                guard let h = head else { return }
                head = nil
                respond(to: h, context: context)
            }
        }

        private func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) {
            let path = request.uri
            var headers = HTTPHeaders()
            var status = HTTPResponseStatus.ok
            let body = "seen \(request.method.rawValue) \(received)\n"
            var chunked = false
            var close = !request.isKeepAlive
            if path.hasPrefix("/status/5") {
                status = .serviceUnavailable
            } else if path.hasPrefix("/chunked") {
                chunked = true
                headers.add(name: "transfer-encoding", value: "chunked")
            } else if path.hasPrefix("/close") {
                close = true
            }
            if !chunked { headers.add(name: "content-length", value: String(body.utf8.count)) }
            if close { headers.add(name: "connection", value: "close") }
            headers.add(name: "x-backend", value: "fuzz")
            let buffer = context.channel.allocator.buffer(string: body)
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                          promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            var trailers: HTTPHeaders?
            if chunked { trailers = ["x-trailer": "done"] }
            let done = context.writeAndFlush(wrapOutboundOut(.end(trailers)))
            if close {
                let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                done.whenComplete { _ in bound.value.close(promise: nil) }
            }
        }
    }
}
