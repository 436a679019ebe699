import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// A downstream HTTP/2 stream's frames as the HTTP/1 parts its `HTTPProxyHandler` reads and writes: the one handler
/// between the stream's channel and the connection manager (the translation itself is `HTTP2MessageTranslation`).
///
/// Inbound, header blocks are checked against RFC 9113's rules here (NIOHTTP2's own checks are off on downstream
/// connections: see `HTTP2FieldRules`); a block that breaks one resets the stream with PROTOCOL_ERROR. The first
/// HEADERS is the request head (ended when it ends the stream), DATA is body, and a second
/// HEADERS the trailers. A CONNECT or extended CONNECT reaches the handler as HTTP/1.1 knows it (a CONNECT, an
/// upgrade) and ended: the stream's DATA belongs to the tunnel, and is held here, with the stream not read further,
/// until the tunnel starts (`releaseHeld`: from then on frames pass untouched, to `HTTP2StreamBytes`) or the answer
/// was not a tunnel (it is dropped with the stream).
///
/// Outbound, a response head is held until the next part shows whether it ends the stream: a head followed by its
/// end is one HEADERS with END_STREAM, as Envoy sends it (a gRPC trailers-only response must be a single header
/// block: gRPC clients read HEADERS and then an empty DATA as a stream that ended without trailers). What is held
/// goes out on the next write or flush. A body's end is an empty DATA with END_STREAM, not the last body frame
/// with the flag: NIOHTTP2 1.46 answers a WINDOW_UPDATE that follows the last stream's end on a connection that
/// sent GOAWAY with a connection error, dropping the response (seen with a drained connection's last stream).
///
/// It is also where the stream is reset with a code of the proxy's choice (`reset(_:)`): closing the stream's
/// channel would always say CANCEL.
final class HTTP2StreamCodec: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTP2Frame.FramePayload

    enum State: Equatable {
        /// Before the request's HEADERS.
        case head
        /// A request (not a CONNECT) is being read; `trailersSeen` once its second header block came.
        case request(trailersSeen: Bool)
        /// A CONNECT waiting for its answer; the stream's frames are held.
        case connect(HTTP2MessageTranslation.Connect)
        /// The tunnel started: frames pass both ways untouched.
        case tunnel
    }

    private(set) var state = State.head
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL was advertised: a request may carry `:protocol`.
    private let extendedConnect: Bool
    /// Inbound frames of a CONNECT's stream, until its tunnel starts.
    private var heldInbound: [HTTP2Frame.FramePayload] = []
    private var readPending = false
    /// A response's HEADERS, until the next part shows whether it ends the stream.
    private var heldHeaders: HTTP2Frame.FramePayload.Headers?
    private var heldPromise: EventLoopPromise<Void>?
    private var context: ChannelHandlerContext?

    init(extendedConnect: Bool) { self.extendedConnect = extendedConnect }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        // The stream's channel closed with a frame held: it will never be written.
        heldHeaders = nil
        heldPromise?.fail(ChannelError.ioOnClosedChannel)
        heldPromise = nil
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .tunnel:
            context.fireChannelRead(data)
        case .connect:
            heldInbound.append(unwrapInboundIn(data))
        case .head:
            readHead(context: context, payload: unwrapInboundIn(data))
        case .request(let trailersSeen):
            switch unwrapInboundIn(data) {
            case .data(let frame):
                guard case .byteBuffer(let body) = frame.data else { preconditionFailure("file IOData from the network") }
                if body.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(.body(body))) }
                if frame.endStream { context.fireChannelRead(wrapInboundOut(.end(nil))) }
            case .headers(let block):
                guard !trailersSeen else {
                    context.fireErrorCaught(HTTP2MessageTranslation.UnexpectedHeaderBlock())
                    return
                }
                state = .request(trailersSeen: true)
                guard let trailers = try? HTTP2MessageTranslation.trailers(block.headers) else {
                    reset(.protocolError)
                    return
                }
                context.fireChannelRead(wrapInboundOut(.end(trailers)))
            default:
                break
            }
        }
    }

    private func readHead(context: ChannelHandlerContext, payload: HTTP2Frame.FramePayload) {
        guard case .headers(let block) = payload else { return }
        let request: (head: HTTPRequestHead, connect: HTTP2MessageTranslation.Connect?)
        do {
            request = try HTTP2MessageTranslation.requestHead(block.headers, endStream: block.endStream,
                                                              extendedConnect: extendedConnect)
        } catch is HTTP2FieldRules.Violation {
            // A malformed request (RFC 9113 8.1.1): the stream's PROTOCOL_ERROR, as NIOHTTP2's validation answered it.
            reset(.protocolError)
            return
        } catch {
            context.fireErrorCaught(error)
            return
        }
        context.fireChannelRead(wrapInboundOut(.head(request.head)))
        if let connect = request.connect {
            state = .connect(connect)
            // The stream's end, when the request brought it at once, is the tunnel's (a half-close).
            if block.endStream { heldInbound.append(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))) }
            context.fireChannelRead(wrapInboundOut(.end(nil)))
        } else {
            state = .request(trailersSeen: false)
            if block.endStream { context.fireChannelRead(wrapInboundOut(.end(nil))) }
        }
    }

    /// Reads stop while frames are held for a tunnel that has not started (the stream's window bounds what waits).
    func read(context: ChannelHandlerContext) {
        if case .connect = state, !heldInbound.isEmpty {
            readPending = true
            return
        }
        context.read()
    }

    /// The tunnel is in place behind this handler: what was held goes on to it, and reads go on.
    func releaseHeld() {
        guard let context, case .connect = state else { return }
        state = .tunnel
        let frames = heldInbound
        heldInbound.removeAll()
        for frame in frames { context.fireChannelRead(NIOAny(frame)) }
        if !frames.isEmpty { context.fireChannelReadComplete() }
        if readPending {
            readPending = false
            context.read()
        }
    }

    // MARK: Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .tunnel = state {
            // The tunnel's bytes, as frames (`HTTP2StreamBytes`).
            writeHeld(context: context)
            context.write(data, promise: promise)
            return
        }
        switch unwrapOutboundIn(data) {
        case .head(let head):
            writeHeld(context: context)
            let accepted = state == .connect(.extended)
            heldHeaders = .init(headers: HTTP2MessageTranslation.responseBlock(head, acceptedUpgrade: accepted))
            heldPromise = promise
        case .body(let body):
            writeHeld(context: context)
            context.write(wrapOutboundOut(.data(.init(data: body))), promise: promise)
        case .end(let trailers?):
            writeHeld(context: context)
            let block = HTTP2MessageTranslation.trailerBlock(trailers)
            context.write(wrapOutboundOut(.headers(.init(headers: block, endStream: true))), promise: promise)
        case .end(nil):
            guard var held = heldHeaders else {
                context.write(wrapOutboundOut(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))),
                              promise: promise)
                return
            }
            let heldPromise = self.heldPromise
            heldHeaders = nil
            self.heldPromise = nil
            if let promise { heldPromise?.futureResult.cascade(to: promise) }
            // The upstream's HTTP/2-to-HTTP/1 translation adds `content-length: 0` to a response that ended with its
            // headers; Envoy forwards such a response without it.
            if held.headers.first(name: "content-length") == "0" { held.headers.remove(name: "content-length") }
            held.endStream = true
            context.write(wrapOutboundOut(.headers(held)), promise: heldPromise ?? promise)
        }
    }

    private func writeHeld(context: ChannelHandlerContext) {
        guard let held = heldHeaders else { return }
        let promise = heldPromise
        heldHeaders = nil
        heldPromise = nil
        context.write(wrapOutboundOut(.headers(held)), promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        writeHeld(context: context)
        context.flush()
    }

    /// RST_STREAM with `code` (what is held is dropped); the stream's channel closes.
    func reset(_ code: HTTP2ErrorCode) {
        // What is held will never be written: its promise fails rather than leaking.
        heldPromise?.fail(ChannelError.ioOnClosedChannel)
        heldPromise = nil
        heldHeaders = nil
        context?.writeAndFlush(wrapOutboundOut(.rstStream(code)), promise: nil)
    }
}

@available(*, unavailable) extension HTTP2StreamCodec: Sendable {}
