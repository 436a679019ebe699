import NIOCore
import NIOHPACK
import NIOHTTP2

/// On a stream's channel, between the frames and the HTTP/1 part translation: CONNECT over HTTP/2 made into what
/// the stream's handler knows from HTTP/1.1, as Envoy's HTTP/2 codec does.
///
/// - A CONNECT (`:method CONNECT`, `:authority`, no `:path`) becomes an HTTP/1.1 CONNECT for that authority
///   (the part translation needs a `:path`; the authority is the target's form).
/// - An extended CONNECT (RFC 8441: `:protocol`, only when `allow_connect` advertised SETTINGS_ENABLE_CONNECT_PROTOCOL)
///   becomes an HTTP/1.1 upgrade: `GET`, `upgrade: <protocol>`, `connection: upgrade`. The 101 that accepts it goes
///   back as a 200 (the part translation drops the HTTP/1 upgrade headers).
///
/// Either request reaches the handler ended, as an HTTP/1 upgrade request does: the stream's DATA belongs to the
/// tunnel. It is held here, with the stream not read further, until the tunnel starts (`releaseHeld`, the stream
/// becomes bytes: `HTTP2StreamBytes`) or the answer was not a tunnel (it is dropped with the stream). Any other
/// request passes through untouched.
final class HTTP2ConnectTranslation: ChannelDuplexHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = HTTP2Frame.FramePayload
    typealias OutboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    enum State: Equatable {
        /// Before the request's HEADERS.
        case head
        /// Not a CONNECT: everything passes.
        case plain
        /// A CONNECT (`extended`: with `:protocol`) waiting for its answer; the stream's DATA is held.
        case connect(extended: Bool)
        /// The tunnel started: held frames went on, and every frame passes.
        case tunnel
    }

    private(set) var state = State.head
    private var held: [HTTP2Frame.FramePayload] = []
    private var readPending = false
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch state {
        case .plain, .tunnel:
            context.fireChannelRead(data)
        case .connect:
            held.append(unwrapInboundIn(data))
        case .head:
            guard case .headers(let headers) = unwrapInboundIn(data),
                  let translated = Self.translate(headers.headers) else {
                state = .plain
                context.fireChannelRead(data)
                return
            }
            state = .connect(extended: translated.extended)
            // The stream's end, when the request brought it at once, is the tunnel's (a half-close).
            if headers.endStream { held.append(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))) }
            var request = headers
            request.headers = translated.headers
            request.endStream = true
            context.fireChannelRead(wrapInboundOut(.headers(request)))
        }
    }

    /// The request's header block as the HTTP/1 translation should see it, and whether it was an extended CONNECT;
    /// nil when the request is not a CONNECT.
    static func translate(_ block: HPACKHeaders) -> (headers: HPACKHeaders, extended: Bool)? {
        guard block.first(name: ":method") == "CONNECT" else { return nil }
        var out = HPACKHeaders()
        out.reserveCapacity(block.count + 2)
        if let proto = block.first(name: ":protocol") {
            for (name, value, indexing) in block where name != ":protocol" {
                out.add(name: name, value: name == ":method" ? "GET" : value, indexing: indexing)
            }
            out.add(name: "upgrade", value: proto)
            out.add(name: "connection", value: "upgrade")
            return (out, true)
        }
        let authority = block.first(name: ":authority") ?? ""
        out.add(name: ":method", value: "CONNECT")
        out.add(name: ":path", value: authority)
        out.add(name: ":scheme", value: "http")
        for (name, value, indexing) in block where name != ":method" { out.add(name: name, value: value, indexing: indexing) }
        return (out, false)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .connect(extended: true) = state, case .headers(var response) = unwrapOutboundIn(data),
              response.headers.first(name: ":status") == "101" else {
            context.write(data, promise: promise)
            return
        }
        // The upgrade was accepted: HTTP/2 says so with a 200 (RFC 8441); the upgrade headers are HTTP/1's.
        var headers = HPACKHeaders()
        headers.reserveCapacity(response.headers.count)
        for (name, value, indexing) in response.headers {
            if name == ":status" {
                headers.add(name: name, value: "200", indexing: indexing)
            } else if name != "upgrade" && name != "connection" {
                headers.add(name: name, value: value, indexing: indexing)
            }
        }
        response.headers = headers
        context.write(wrapOutboundOut(.headers(response)), promise: promise)
    }

    /// Reads stop while DATA is held for a tunnel that has not started (the stream's window bounds what waits).
    func read(context: ChannelHandlerContext) {
        if case .connect = state, !held.isEmpty {
            readPending = true
            return
        }
        context.read()
    }

    /// The tunnel is in place behind this handler: what was held goes on to it, and reads go on.
    func releaseHeld() {
        guard let context, case .connect = state else { return }
        state = .tunnel
        let frames = held
        held.removeAll()
        for frame in frames { context.fireChannelRead(wrapInboundOut(frame)) }
        if !frames.isEmpty { context.fireChannelReadComplete() }
        if readPending {
            readPending = false
            context.read()
        }
    }
}

@available(*, unavailable) extension HTTP2ConnectTranslation: Sendable {}
