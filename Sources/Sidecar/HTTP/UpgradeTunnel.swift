import NIOCore
import NIOHTTP1
import SidecarUpstream

/// The stream's last stage after an upstream accepted an HTTP/1.1 upgrade (101, e.g. WebSocket): both
/// connections stop speaking HTTP and carry the upgraded protocol's bytes as they are, GlueHandler-style.
///
/// Each side's HTTP codec is removed and a `UpgradeTunnel` takes its place, in front of the handler that owned the
/// connection (`HTTPProxyHandler` downstream, `UpstreamConnection` upstream); those stay to see the connection
/// end. Bytes read on one side are written to the other; reads stop while the other side cannot take more; when
/// either side closes, the other is closed after what it was sent. Bytes the upstream sent right behind its 101
/// reach the tunnel from the removed decoder.
///
/// Downstream may also be one stream of an HTTP/2 connection (a CONNECT or extended CONNECT): there the tunnel sits
/// behind `HTTP2StreamBytes`, which turns the stream's DATA into bytes, and the client's END_STREAM arrives as
/// `ChannelEvent.inputClosed`, which shuts the upstream's write side (a half-close) rather than closing it.
final class UpgradeTunnel: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private(set) weak var partner: UpgradeTunnel?
    private var context: ChannelHandlerContext?
    /// Bytes read before both codecs were gone (see `join`).
    private var waiting: [NIOAny] = []
    private var isOpen = false
    private var readPending = false
    /// Called with the byte count of each read (the stream's bytes and idle-timeout activity).
    private let onRead: (Int) -> Void

    private init(onRead: @escaping (Int) -> Void) { self.onRead = onRead }

    /// Switches both connections to the tunnel. `downstream` is the pipeline of the proxy handler's connection,
    /// `upstream` the upstream connection's: with its HTTP/1 codec (an upgrade), or raw TCP from the start
    /// (`upstreamHasCodec` false: a terminated CONNECT). Throws when a pipeline is not as expected (the caller closes
    /// both).
    static func join(downstream: ChannelPipeline.SynchronousOperations, upstream: ChannelPipeline.SynchronousOperations,
                     upstreamHasCodec: Bool,
                     downstreamRead: @escaping (Int) -> Void, upstreamRead: @escaping (Int) -> Void) throws {
        let down = UpgradeTunnel(onRead: downstreamRead)
        let up = UpgradeTunnel(onRead: upstreamRead)
        down.partner = up
        up.partner = down
        // Each tunnel goes right behind its decoder, so the decoder's left-over bytes reach it; then the codec goes,
        // encoders first: a decoder hands its left-over bytes on as it leaves, and they are written to the other
        // side at once.
        var requestDecoder: ByteToMessageHandler<HTTPRequestDecoder>?
        var connectStream: HTTP2StreamCodec?
        if let codec = try? downstream.handler(type: HTTP2StreamCodec.self) {
            // A stream of an HTTP/2 connection: its frames become bytes right behind the stream's codec, which passes
            // them untouched from now on (`releaseHeld`).
            let bytes = HTTP2StreamBytes(ending: upstreamHasCodec ? .reset(.connectError) : .endStream)
            try downstream.addHandler(bytes, position: .after(codec))
            try downstream.addHandler(down, position: .after(bytes))
            connectStream = codec
        } else {
            let decoder = try downstream.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try downstream.addHandler(down, position: .after(decoder))
            requestDecoder = decoder
        }
        var responseDecoder: ByteToMessageHandler<HTTPResponseDecoder>?
        if upstreamHasCodec {
            let decoder = try upstream.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self)
            try upstream.addHandler(up, position: .after(decoder))
            responseDecoder = decoder
        } else {
            try upstream.addHandler(up)
        }
        if let requestDecoder {
            downstream.removeHandler(try downstream.handler(type: HTTPResponseEncoder.self), promise: nil)
        }
        if upstreamHasCodec { upstream.removeHandler(try upstream.handler(type: HTTPRequestEncoder.self), promise: nil) }
        if let requestDecoder { downstream.removeHandler(requestDecoder, promise: nil) }
        if let responseDecoder { upstream.removeHandler(responseDecoder, promise: nil) }
        // The stream's DATA that waited for the tunnel goes into it (held by the tunnel until both sides are open).
        connectStream?.releaseHeld()
        // A decoder removed inside its own read leaves at that read's end. Until then it is also an outbound handler
        // (the response decoder watches the requests written past it), so nothing is written into a pipeline that
        // may still have one: the bytes wait, and go (flushed) once both decoders are gone.
        downstream.eventLoop.execute {
            down.open()
            up.open()
        }
    }

    /// Both codecs are gone: bytes read meanwhile go to the other side.
    private func open() {
        guard !isOpen else { return }
        isOpen = true
        guard let partnerContext = partner?.context else { return }
        for data in waiting { partnerContext.write(data, promise: nil) }
        waiting.removeAll()
        partnerContext.flush()
        if inputClosedWhileWaiting { partner?.shutOutput() }
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    var isWritable: Bool { context?.channel.isWritable ?? false }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        onRead(buffer.readableBytes)
        guard isOpen else {
            waiting.append(data)
            return
        }
        guard let partnerContext = partner?.context else { return }
        partnerContext.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if isOpen { partner?.context?.flush() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The other side gets what it was sent, then closes.
        if let p = partner?.context {
            p.writeAndFlush(wrapOutboundOut(p.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
                p.close(promise: nil)
            }
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    /// The client ended its side (an HTTP/2 stream's END_STREAM): the other side's write side is shut once what
    /// came before went out.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case ChannelEvent.inputClosed = event else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard isOpen else {
            inputClosedWhileWaiting = true
            return
        }
        partner?.shutOutput()
    }

    private var inputClosedWhileWaiting = false

    private func shutOutput() {
        guard let context else { return }
        context.flush()
        context.close(mode: .output, promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.resumeReading() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if partner?.isWritable ?? true {
            context.read()
        } else {
            readPending = true
        }
    }

    private func resumeReading() {
        guard readPending, let context else { return }
        readPending = false
        context.read()
    }
}

@available(*, unavailable) extension UpgradeTunnel: Sendable {}
