import NIOCore

/// Sits right before the HTTP/1 request decoder and holds the read the decoder is parsing, only while it parses it:
/// a parse error is raised inside that read, and `CodecErrorStatus` reads the bytes to answer it as Envoy does. A
/// reference to the read's buffer, never a copy; released as soon as the decoder has handed the read on.
final class DecoderInputTap: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// The read being parsed, or nil between reads.
    private(set) var parsing: ByteBuffer?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        parsing = unwrapInboundIn(data)
        context.fireChannelRead(data)
        parsing = nil
    }
}

@available(*, unavailable) extension DecoderInputTap: Sendable {}
