import NIOCore
import NIOHTTP2

/// On a stream's channel, between the HTTP/1 part translation and the stream: a HEADERS frame followed at once by
/// an empty DATA frame that ends the stream goes out as one HEADERS frame with END_STREAM.
///
/// The translation writes a response head and its end as two frames, but a gRPC trailers-only response (status in
/// the only header block, as for an unimplemented method) must be one header block that ends the stream: gRPC
/// clients read HEADERS followed by an empty DATA as a stream that ended without trailers. Envoy sends such a
/// response as one frame; so does this. The held HEADERS goes out on the next write or flush.
///
/// Being the stream's frame-level handler, it is also where the stream is reset with a code of the proxy's choice
/// (`reset(_:)`): closing the stream's channel would always say CANCEL.
final class HeadersEndStreamCoalescer: ChannelOutboundHandler {
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    private var held: (headers: HTTP2Frame.FramePayload.Headers, promise: EventLoopPromise<Void>?)?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let payload = unwrapOutboundIn(data)
        if let (headers, heldPromise) = held {
            held = nil
            if case .data(let d) = payload, d.endStream, d.data.readableBytes == 0 {
                var ended = headers
                // The upstream's HTTP/2-to-HTTP/1 translation adds `content-length: 0` to a response that ended
                // with its headers; Envoy forwards such a response without it.
                if ended.headers.first(name: "content-length") == "0" { ended.headers.remove(name: "content-length") }
                ended.endStream = true
                if let promise { heldPromise?.futureResult.cascade(to: promise) }
                context.write(wrapOutboundOut(.headers(ended)), promise: heldPromise ?? promise)
                return
            }
            context.write(wrapOutboundOut(.headers(headers)), promise: heldPromise)
        }
        if case .headers(let h) = payload, !h.endStream {
            held = (h, promise)
            return
        }
        context.write(data, promise: promise)
    }

    private var context: ChannelHandlerContext?
    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// RST_STREAM with `code` (what is held is dropped); the stream's channel closes.
    func reset(_ code: HTTP2ErrorCode) {
        // What is held will never be written: its promise fails rather than leaking.
        held?.promise?.fail(ChannelError.ioOnClosedChannel)
        held = nil
        context?.writeAndFlush(wrapOutboundOut(.rstStream(code)), promise: nil)
    }

    func flush(context: ChannelHandlerContext) {
        if let (headers, promise) = held {
            held = nil
            context.write(wrapOutboundOut(.headers(headers)), promise: promise)
        }
        context.flush()
    }
}

@available(*, unavailable) extension HeadersEndStreamCoalescer: Sendable {}
