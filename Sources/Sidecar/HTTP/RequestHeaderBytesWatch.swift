import NIOCore

/// Sits before the HTTP/1 request decoder when the connection manager has a `request_headers_timeout`: it tells the
/// handler that bytes arrived, so the headers timer starts at the first byte of a request's headers (the handler
/// itself only sees complete heads). Passes everything on untouched.
final class RequestHeaderBytesWatch: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Weak: after an upgrade the tunnel may outlive the HTTP handler.
    private weak var handler: HTTPProxyHandler?
    init(handler: HTTPProxyHandler) { self.handler = handler }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let handler else { return context.fireChannelRead(data) }
        let heads = handler.headsReceived
        context.fireChannelRead(data)
        // After the decoder had them: bytes that completed a head (handed on and counted meanwhile) arm nothing;
        // bytes that left a head incomplete do.
        if handler.headsReceived == heads { handler.requestBytesArrived() }
    }
}

@available(*, unavailable) extension RequestHeaderBytesWatch: Sendable {}
