import NIOCore
import NIOHTTP2

/// An HTTP/2 stream carrying a tunnel (a CONNECT or an upgrade over extended CONNECT) as a byte stream, behind the
/// stream's codec once the tunnel started (see `UpgradeTunnel.join`).
///
/// DATA becomes bytes and bytes become DATA. The client's END_STREAM is the tunnel's half-close: it goes on as
/// `ChannelEvent.inputClosed`, and the tunnel shuts the upstream's write side. When the tunnel closes the stream
/// (the upstream went), the stream ends as Envoy ends it: after a raw TCP upstream, with END_STREAM (and a
/// RST_STREAM NO_ERROR when the client had not ended its side); after an upstream that spoke HTTP/1 (an upgrade, a
/// forwarded CONNECT), with RST_STREAM CONNECT_ERROR behind the bytes sent.
final class HTTP2StreamBytes: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = HTTP2Frame.FramePayload

    enum Ending: Equatable {
        /// END_STREAM (then RST_STREAM NO_ERROR if the client's side is still open).
        case endStream
        /// RST_STREAM with this code.
        case reset(HTTP2ErrorCode)
    }

    private let ending: Ending
    private var clientEnded = false
    private var ended = false

    init(ending: Ending) { self.ending = ending }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .data(let d):
            if case .byteBuffer(let buffer) = d.data, buffer.readableBytes > 0 {
                context.fireChannelRead(wrapInboundOut(buffer))
            }
            if d.endStream { clientEnded(context) }
        case .headers(let h):
            // Trailers on a tunnel carry nothing to send on; their END_STREAM is the half-close.
            if h.endStream { clientEnded(context) }
        default:
            break
        }
    }

    private func clientEnded(_ context: ChannelHandlerContext) {
        guard !clientEnded else { return }
        clientEnded = true
        context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        guard buffer.readableBytes > 0, !ended else {
            promise?.succeed(())
            return
        }
        context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(buffer), endStream: false))), promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode != .input, !ended else {
            context.close(mode: mode, promise: promise)
            return
        }
        ended = true
        switch ending {
        case .reset(let code):
            context.writeAndFlush(wrapOutboundOut(.rstStream(code)), promise: promise)
        case .endStream:
            let end = HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))
            if clientEnded {
                // Both sides ended: the stream closes, and its channel with it.
                context.writeAndFlush(wrapOutboundOut(end), promise: promise)
            } else {
                // The reset goes once the END_STREAM went: one queued behind flow control would be dropped by it.
                let rst = wrapOutboundOut(.rstStream(.noError))
                context.writeAndFlush(wrapOutboundOut(end)).assumeIsolated().whenComplete { _ in
                    context.writeAndFlush(rst, promise: promise)
                }
            }
        }
    }
}

@available(*, unavailable) extension HTTP2StreamBytes: Sendable {}
