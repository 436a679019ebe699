import NIOCore
import NIOHTTP1
import SidecarCore

/// The connection side of a stream: where the last encoder's output goes and what a filter may learn about the
/// downstream connection. The HTTP/1 connection handler implements it (an HTTP/2 stream will too).
protocol HTTPStreamCodec: AnyObject {
    var eventLoop: EventLoop { get }
    /// The downstream connection as filters see it.
    var downstream: DownstreamInfo { get }
    /// Connection-scoped state of filters (e.g. local_rate_limit_per_downstream_connection buckets).
    var connectionFilterState: ConnectionFilterState { get }
    /// The response leaves: the codec adds what the connection manager owns (`server`, `connection: close`) and
    /// counts it.
    /// `endStream`: the response has no body (the codec frames it with `content-length: 0`).
    func encodeResponseHead(_ head: HTTPResponseHead, endStream: Bool)
    func encodeResponseBody(_ buffer: ByteBuffer)
    func encodeResponseEnd(_ trailers: HTTPHeaders?)
    /// A filter answers the request itself: the router stops (if it started) and the rest of the request
    /// body is dropped. `closeConnection`: the connection ends after this response.
    func localReplyWillStart(closeConnection: Bool)
    /// The head of a local reply with the connection manager's headers and the route's response mutations.
    func localReplyHead(status: HTTPResponseStatus, bodyLength: Int, extra: HTTPHeaders) -> HTTPResponseHead
    /// The client address the connection manager takes from `x-forwarded-for` (`xff_num_trusted_hops`,
    /// `use_remote_address`); nil: the peer is the client. RBAC's `remote_ip`.
    func forwardedClientAddress(_ headers: HTTPHeaders) -> IPAddress?
    /// What `%…%` header-value commands read (`*_headers_to_add`), without the headers being mutated.
    func formatContext() -> FormatContext
    /// Envoy's `setResponseFlag`: why the proxy answered as it did (`%RESPONSE_FLAGS%`).
    func setResponseFlag(_ flag: ResponseFlag)
    /// `%RESPONSE_CODE_DETAILS%` (Envoy's `setResponseCodeDetails`): the last one set is logged.
    func setResponseCodeDetails(_ details: String)
    /// The stream cannot be answered any more (the response started): reset the downstream.
    func resetStream()
    /// Decoding was held by a filter and goes on: reads may resume.
    func decodingResumed()
}

/// What filters may know about the downstream connection.
struct DownstreamInfo {
    var remoteAddress: SocketAddress?
    /// Envoy's downstream local address: the original destination when one was restored.
    var localAddress: SocketAddress?
    var security: ConnectionSecurity?
    var requestedServerName: String?
    /// The request came over HTTP/2 (a stream of a multiplexed connection).
    var isHTTP2 = false
}

/// Per-connection state filters keep across the streams of one connection, keyed by the filter factory.
final class ConnectionFilterState {
    private var values: [ObjectIdentifier: AnyObject] = [:]

    func value<T: AnyObject>(for key: AnyObject, make: () -> T) -> T {
        let id = ObjectIdentifier(key)
        if let v = values[id] as? T { return v }
        let v = make()
        values[id] = v
        return v
    }
}

/// One request's trip through the connection manager's `http_filters`: Envoy's FilterManager, and the callbacks
/// a filter gets (`StreamDecoderFilterCallbacks` / `StreamEncoderFilterCallbacks`).
///
/// Decoding runs the filters in order and ends in the router (the last filter); encoding runs them in reverse and
/// ends in the codec. A filter that returns `stopIteration` holds its direction at itself: later parts of the
/// request (or response) wait in this stream, in order, until `continueDecoding()` / `continueEncoding()`.
/// A filter may answer with `sendLocalReply`, which ends decoding and sends the reply through every encoder.
///
/// One instance per connection, reused for each request (its arrays keep their capacity): starting a stream
/// allocates nothing for stateless filters.
final class HTTPFilterStream {
    unowned let codec: HTTPStreamCodec
    let worker: Worker
    /// The connection's router, the last filter of every stream.
    let router: any HTTPStreamFilter
    private(set) var filters: [any HTTPStreamFilter] = []
    /// The config this stream started on (the worker's current snapshot then): its route was chosen from it, and
    /// the router reaches clusters through it until the stream ends, whatever is installed meanwhile. Kept after
    /// the stream until the next one starts.
    private(set) var snapshot: WorkerSnapshot

    // The request as routing saw it, and the route it chose.
    private(set) var request = RouteRequest(method: "", path: "", authority: "")
    private(set) var route: RouteDecision = .noRoute
    private(set) var perFilterConfig = PerFilterConfigs()
    /// Most routes have no `typed_per_filter_config`: filters ask for theirs on every request, and this answers
    /// without reading three dictionaries.
    private var hasPerFilterConfig = false
    /// The request method was HEAD: local replies carry no body.
    private(set) var isHeadRequest = false
    /// The downstream request has a body (Content-Length > 0 or chunked).
    private(set) var requestHasBody = false
    /// A filter took this request for a health check (Envoy's `streamInfo().healthCheck(true)`): the connection
    /// manager leaves it out of `downstream_rq_Nxx`.
    var isHealthCheck = false
    /// Bumped per stream: timers a filter scheduled for an earlier stream do nothing.
    private(set) var streamID: UInt64 = 0
    private var scheduled: [Scheduled<Void>] = []
    private var endHandlers: [() -> Void] = []

    private var decoder = Direction<HTTPRequestHead>()
    private var encoder = Direction<HTTPResponseHead>()
    /// A local reply was sent: decoding is over and the router never saw (or no longer sees) the request.
    private(set) var localReplySent = false
    /// Response headers left the last encoder.
    private(set) var responseStarted = false
    private(set) var active = false

    init(codec: HTTPStreamCodec, worker: Worker, router: any HTTPStreamFilter) {
        self.codec = codec
        self.worker = worker
        self.router = router
        self.snapshot = worker.current
    }

    var eventLoop: EventLoop { codec.eventLoop }
    var downstream: DownstreamInfo { codec.downstream }
    var stats: WorkerStats { worker.stats }
    var connectionFilterState: ConnectionFilterState { codec.connectionFilterState }

    /// Decoding is held by a filter: the connection should stop reading (backpressure).
    var decodeHeld: Bool { active && decoder.stopped }

    // MARK: Lifecycle

    /// Starts a stream through `factories`, the listener's `http_filters` (the router last). `snapshot`: the one
    /// `route` came from (nil: the worker's current one).
    func begin(factories: [any HTTPFilterFactory], request: RouteRequest, route: RouteDecision,
               perFilterConfig: PerFilterConfigs, isHead: Bool, hasBody: Bool, snapshot: WorkerSnapshot? = nil) {
        streamID &+= 1
        self.snapshot = snapshot ?? worker.current
        filters.removeAll(keepingCapacity: true)
        for f in factories { filters.append(f.makeFilter(stream: self)) }
        self.request = request
        self.route = route
        self.perFilterConfig = perFilterConfig
        hasPerFilterConfig = !perFilterConfig.isEmpty
        isHeadRequest = isHead
        requestHasBody = hasBody
        isHealthCheck = false
        decoder = Direction()
        encoder = Direction()
        localReplySent = false
        responseStarted = false
        active = true
    }

    /// The stream is over (response sent, or the connection went away): filters let go, timers stop.
    func end() {
        guard active else { return }
        active = false
        for t in scheduled { t.cancel() }
        scheduled.removeAll(keepingCapacity: true)
        for f in filters { f.onStreamComplete(stream: self) }
        if !endHandlers.isEmpty {
            let handlers = endHandlers
            endHandlers.removeAll(keepingCapacity: true)
            for h in handlers { h() }
        }
        filters.removeAll(keepingCapacity: true)
        decoder = Direction()
        encoder = Direction()
        // An idle keep-alive connection should not hold its last request's headers and route.
        route = .noRoute
        request = RouteRequest(method: "", path: "", authority: "")
        perFilterConfig = PerFilterConfigs()
        hasPerFilterConfig = false
    }

    /// The most specific `typed_per_filter_config` for the filter named `name` (route, then virtual host, then
    /// route configuration), as its filter decoded it.
    func perRouteConfig<T>(_ name: String, as type: T.Type) -> T? {
        // Unwrapped first: `lookup(name)?.config as? T` cast the optional itself, a runtime cast per call even
        // when there is no entry.
        guard hasPerFilterConfig, let entry = perFilterConfig.lookup(name) else { return nil }
        return entry.config as? T
    }

    /// Whether the most specific `typed_per_filter_config` entry for `name` disables the filter on this route
    /// (`envoy.config.route.v3.FilterConfig` with `disabled: true`).
    func filterDisabled(_ name: String) -> Bool {
        guard hasPerFilterConfig else { return false }
        return perFilterConfig.lookup(name)?.disabled ?? false
    }

    /// Runs `body` when this stream ends, however it ends: for shared filters that took something for one
    /// stream (an active fault).
    func onEnd(_ body: @escaping () -> Void) {
        endHandlers.append(body)
    }

    /// Runs `body` after `delay` on the stream's event loop, unless the stream has ended by then.
    func schedule(in delay: TimeAmount, _ body: @escaping () -> Void) {
        let id = streamID
        let task = eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: delay) { [self] in
            guard active, streamID == id else { return }
            body()
        }
        scheduled.append(task)
    }

    // MARK: Decoding (request)

    func decodeHeaders(_ head: HTTPRequestHead, endStream: Bool) {
        decoder.head = head
        decoder.headersEndStream = endStream
        decoder.ended = endStream
        runDecodeHeaders(from: 0)
    }

    func decodeData(_ data: ByteBuffer, endStream: Bool) {
        guard active, !localReplySent else { return }
        if endStream { decoder.ended = true }
        if !decoder.headersPassed {
            decoder.hold(data)
            return
        }
        var start = 0
        if decoder.stopped {
            // The filter holding the request sees each new chunk, together with what it buffered.
            decoder.stopped = false
            start = decoder.index
        }
        runDecodeData(resumeAt: start, data: data, endStream: endStream)
    }

    func decodeTrailers(_ trailers: HTTPHeaders) {
        guard active, !localReplySent else { return }
        decoder.ended = true
        decoder.trailers = trailers
        if !decoder.headersPassed || decoder.stopped { return }
        runDecodeTrailers(from: 0)
    }

    /// A filter that stopped decoding lets the request go on from the filter after it.
    func continueDecoding() {
        guard active, !localReplySent, decoder.stopped else { return }
        decoder.stopped = false
        let next = decoder.index + 1
        if !decoder.headersPassed {
            runDecodeHeaders(from: next)
        } else {
            runDecodeData(resumeAt: next, data: nil, endStream: decoder.ended && decoder.trailers == nil)
        }
        if active && !decoder.stopped { codec.decodingResumed() }
    }

    private func runDecodeHeaders(from start: Int) {
        var i = start
        while i < filters.count {
            // Moved out while the filter runs: it may call back into this stream (a local reply).
            var head = decoder.head.take()!
            let status = filters[i].decodeHeaders(&head, endStream: decoder.headersEndStream, stream: self)
            if localReplySent || !active { return }
            decoder.head = head
            switch status {
            case .continue:
                i += 1
            case .stopIteration:
                decoder.stopped = true
                decoder.index = i
                return
            }
        }
        decoder.headersPassed = true
        decoder.head = nil
        // Whatever arrived while the headers were held follows them from the first filter.
        if !decoder.headersEndStream {
            runDecodeData(resumeAt: 0, data: nil, endStream: decoder.ended && decoder.trailers == nil)
        }
    }

    /// Passes held data (and `data`) through the filters from `resumeAt`.
    private func runDecodeData(resumeAt start: Int, data: ByteBuffer?, endStream: Bool) {
        guard var chunk = decoder.takeChunk(adding: data, endStream: endStream) else {
            if decoder.trailers != nil && decoder.ended { runDecodeTrailers(from: 0) }
            return
        }
        var i = start
        while i < filters.count {
            let status = filters[i].decodeData(&chunk, endStream: endStream, stream: self)
            if localReplySent || !active { return }
            guard decoder.goesOn(after: status, at: i, holding: chunk) else { return }
            i += 1
        }
        if decoder.trailers != nil && decoder.ended { runDecodeTrailers(from: 0) }
    }

    private func runDecodeTrailers(from start: Int) {
        guard var trailers = decoder.trailers else { return }
        var i = start
        while i < filters.count {
            decoder.trailersAt = i
            let status = filters[i].decodeTrailers(&trailers, stream: self)
            decoder.trailersAt = -1
            if localReplySent || !active { return }
            if case .stopIteration = status {
                decoder.trailers = trailers
                decoder.stopped = true
                decoder.index = i
                return
            }
            i += 1
        }
        decoder.trailers = nil
    }

    // MARK: Encoding (response)

    /// Response headers from the router (or a local reply), through the encoders in reverse order.
    func encodeHeaders(_ head: HTTPResponseHead, endStream: Bool) {
        encoder.head = head
        encoder.headersEndStream = endStream
        encoder.ended = endStream
        runEncodeHeaders(from: filters.count - 2)
    }

    func encodeData(_ data: ByteBuffer, endStream: Bool) {
        guard active else { return }
        if endStream { encoder.ended = true }
        if let h = encoder.headersHeldAt {
            // Envoy: a filter that stopped the headers still gets the body (the filters after it pass it on).
            var chunk = data
            var i = filters.count - 2
            while i > h {
                _ = filters[i].encodeData(&chunk, endStream: endStream, stream: self)
                if !active { return }
                i -= 1
            }
            let status = filters[h].encodeData(&chunk, endStream: endStream, stream: self)
            if !active { return }
            switch status {
            case .stopIterationAndBuffer: encoder.hold(chunk)
            case .stopIterationNoBuffer: break
            case .continue:
                encoder.hold(chunk)
                releaseHeldHeaders(h)
            }
            return
        }
        if !encoder.headersPassed {
            encoder.hold(data)
            return
        }
        var start = filters.count - 2
        if encoder.stopped {
            encoder.stopped = false
            start = encoder.index
        }
        runEncodeData(resumeAt: start, data: data, endStream: endStream)
    }

    func encodeTrailers(_ trailers: HTTPHeaders) {
        guard active else { return }
        encoder.ended = true
        if let h = encoder.headersHeldAt {
            // The filter holding the headers gets the trailers too; `continue` lets everything go on.
            var t = trailers
            var i = filters.count - 2
            while i > h {
                _ = filters[i].encodeTrailers(&t, stream: self)
                if !active { return }
                i -= 1
            }
            let status = filters[h].encodeTrailers(&t, stream: self)
            if !active { return }
            encoder.trailers = t
            if case .continue = status { releaseHeldHeaders(h) }
            return
        }
        encoder.trailers = trailers
        if !encoder.headersPassed || encoder.stopped { return }
        runEncodeTrailers(from: filters.count - 2)
    }

    /// The response head a filter holds (it stopped the headers and takes the body): the filter may still change
    /// it, e.g. from the trailers. Nil when no filter holds the headers.
    func modifyHeldResponseHead(_ change: (inout HTTPResponseHead) -> Void) {
        guard encoder.headersHeldAt != nil, var head = encoder.head else { return }
        change(&head)
        encoder.head = head
    }

    /// The response body bytes held behind the held headers.
    var heldResponseBodyLength: Int { encoder.buffer?.readableBytes ?? 0 }

    /// Takes the response body held behind the held headers (the filter holding them replaces it).
    func takeHeldResponseBody() -> ByteBuffer? {
        guard encoder.headersHeldAt != nil else { return nil }
        defer { encoder.buffer = nil }
        return encoder.buffer
    }

    /// The filter at `h` that held the headers lets them go: they continue from the filter before it, then the body
    /// and trailers it held, which the filters from `h` up already saw.
    private func releaseHeldHeaders(_ h: Int) {
        encoder.headersHeldAt = nil
        encoder.stopped = false
        runEncodeHeaders(from: h - 1, bodyFrom: h - 1)
    }

    /// An encoder that stopped lets the response go on from the filter before it.
    func continueEncoding() {
        if let h = encoder.headersHeldAt, active {
            releaseHeldHeaders(h)
            return
        }
        guard active, encoder.stopped else { return }
        encoder.stopped = false
        let next = encoder.index - 1
        if !encoder.headersPassed {
            runEncodeHeaders(from: next)
        } else {
            runEncodeData(resumeAt: next, data: nil, endStream: encoder.ended && encoder.trailers == nil)
        }
    }

    /// `bodyFrom`: where the held body and trailers start once the headers passed (below a filter that held them).
    private func runEncodeHeaders(from start: Int, bodyFrom: Int? = nil) {
        var i = start
        while i >= 0 {
            var head = encoder.head.take()!
            let status = filters[i].encodeHeaders(&head, endStream: encoder.headersEndStream, stream: self)
            if !active { return }
            encoder.head = head
            switch status {
            case .continue:
                i -= 1
            case .stopIteration:
                encoder.stopped = true
                encoder.index = i
                encoder.headersHeldAt = i
                return
            }
        }
        encoder.headersPassed = true
        responseStarted = true
        let head = encoder.head!
        encoder.head = nil
        codec.encodeResponseHead(head, endStream: encoder.headersEndStream)
        if encoder.headersEndStream {
            codec.encodeResponseEnd(nil)
            return
        }
        let from = bodyFrom ?? filters.count - 2
        runEncodeData(resumeAt: from, data: nil, endStream: encoder.ended && encoder.trailers == nil, trailersFrom: from)
    }

    private func runEncodeData(resumeAt start: Int, data: ByteBuffer?, endStream: Bool, trailersFrom: Int? = nil) {
        guard var chunk = encoder.takeChunk(adding: data, endStream: endStream) else {
            if encoder.trailers != nil && encoder.ended { runEncodeTrailers(from: trailersFrom ?? filters.count - 2) }
            return
        }
        var i = start
        while i >= 0 {
            let status = filters[i].encodeData(&chunk, endStream: endStream, stream: self)
            if !active { return }
            guard encoder.goesOn(after: status, at: i, holding: chunk) else { return }
            i -= 1
        }
        if chunk.readableBytes > 0 { codec.encodeResponseBody(chunk) }
        if endStream {
            codec.encodeResponseEnd(nil)
        } else if encoder.trailers != nil && encoder.ended {
            runEncodeTrailers(from: trailersFrom ?? filters.count - 2)
        }
    }

    private func runEncodeTrailers(from start: Int) {
        guard var trailers = encoder.trailers else { return }
        var i = start
        while i >= 0 {
            encoder.trailersAt = i
            let status = filters[i].encodeTrailers(&trailers, stream: self)
            encoder.trailersAt = -1
            if case .stopIteration = status {
                encoder.trailers = trailers
                encoder.stopped = true
                encoder.index = i
                return
            }
            if !active { return }
            i -= 1
        }
        encoder.trailers = nil
        // A filter that took every trailer (gRPC-Web puts them in the body) leaves a plain end.
        codec.encodeResponseEnd(trailers.isEmpty ? nil : trailers)
    }

    /// Envoy's `addDecodedData` from `decodeTrailers`: body bytes a filter adds before the request trailers (a
    /// compressor's last bytes) go through the filters after it, to the router. Only valid while that filter's
    /// `decodeTrailers` runs; the filters they pass cannot hold them.
    func addDecodedData(_ data: ByteBuffer) {
        guard active, !localReplySent, decoder.trailersAt >= 0, data.readableBytes > 0 else { return }
        var chunk = data
        var i = decoder.trailersAt + 1
        while i < filters.count {
            _ = filters[i].decodeData(&chunk, endStream: false, stream: self)
            if localReplySent || !active { return }
            i += 1
        }
    }

    /// Envoy's `addEncodedData` from `encodeTrailers`: body bytes a filter adds before the response trailers (a
    /// compressor's last bytes) go through the encoders after it, to the codec. Only valid while that filter's
    /// `encodeTrailers` runs; the encoders they pass cannot hold them.
    func addEncodedData(_ data: ByteBuffer) {
        guard active, encoder.trailersAt >= 0, data.readableBytes > 0 else { return }
        var chunk = data
        var i = encoder.trailersAt - 1
        while i >= 0 {
            _ = filters[i].encodeData(&chunk, endStream: false, stream: self)
            if !active { return }
            i -= 1
        }
        if chunk.readableBytes > 0 { codec.encodeResponseBody(chunk) }
    }

    // MARK: Local replies

    /// A filter answers the request with response headers of its own and no body (Envoy's
    /// `encodeHeaders(…, end_stream = true)` from a decoder filter, e.g. a CORS preflight): decoding ends as for a
    /// local reply, and the headers pass through every encoder, but nothing of a local reply is added (no route
    /// response headers, no body). `closeConnection`: nil closes when the request still had a body to send.
    func respond(_ head: HTTPResponseHead, closeConnection: Bool? = nil) {
        guard beginLocalAnswer(closeConnection: closeConnection) else { return }
        encodeHeaders(head, endStream: true)
    }

    /// What answering from the proxy starts with: decoding ends and the connection is told. False when there is
    /// nothing to answer (the stream is over, or its response started: then it is reset).
    private func beginLocalAnswer(closeConnection: Bool?) -> Bool {
        guard active else { return false }
        if responseStarted {
            codec.resetStream()
            return false
        }
        localReplySent = true
        decoder.stopped = false
        decoder.buffer = nil
        decoder.head = nil
        codec.localReplyWillStart(closeConnection: closeConnection ?? (requestHasBody && !decoder.ended))
        return true
    }

    /// Answers the request from a filter: Envoy's `sendLocalReply`. The reply passes through every encoder. Once
    /// the response has started nothing can be sent any more, and the stream is reset instead.
    ///
    /// `closeConnection`: nil lets the stream decide as Envoy's HTTP/1 codec does: a response that ends before
    /// its request closes the connection.
    ///
    /// A gRPC request (content-type `application/grpc`) gets every local reply as gRPC does errors: a trailers-only
    /// response, 200 with `grpc-status` (`grpcStatus`, else the HTTP status mapped as Envoy maps it) and
    /// `grpc-message` (the body), and no body.
    ///
    /// `details`: Envoy's response code details for this reply (`%RESPONSE_CODE_DETAILS%`).
    func sendLocalReply(status: HTTPResponseStatus, body: String, headers extra: HTTPHeaders = HTTPHeaders(),
                        grpcStatus: Int? = nil, closeConnection: Bool? = nil, details: String? = nil) {
        if let details { codec.setResponseCodeDetails(details) }
        if RouteMatch.isGRPC(request) {
            var grpc = extra
            grpc.add(name: "content-type", value: "application/grpc")
            grpc.add(name: "grpc-status", value: String(grpcStatus ?? GRPCStatus.fromHTTP(Int(status.code))))
            if !body.isEmpty { grpc.add(name: "grpc-message", value: GRPCStatus.percentEncode(body)) }
            sendPlainLocalReply(status: .ok, body: "", headers: grpc, closeConnection: closeConnection)
            return
        }
        sendPlainLocalReply(status: status, body: body, headers: extra, closeConnection: closeConnection)
    }

    private func sendPlainLocalReply(status: HTTPResponseStatus, body: String, headers extra: HTTPHeaders,
                                     closeConnection: Bool?) {
        guard beginLocalAnswer(closeConnection: closeConnection) else { return }
        let bytes = Array(body.utf8)
        let head = codec.localReplyHead(status: status, bodyLength: bytes.count, extra: extra)
        let withBody = !bytes.isEmpty && !isHeadRequest
        encodeHeaders(head, endStream: !withBody)
        if withBody, active {
            var buffer = ByteBufferAllocator().buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            encodeData(buffer, endStream: true)
        }
    }
}

@available(*, unavailable) extension HTTPFilterStream: Sendable {}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

/// gRPC statuses for local replies (Envoy's `Grpc::Utility`).
enum GRPCStatus {
    /// `httpToGrpcStatus`.
    static func fromHTTP(_ status: Int) -> Int {
        switch status {
        case 400: return 13
        case 401: return 16
        case 403: return 7
        case 404: return 12
        case 429, 502, 503, 504: return 14
        default: return 2
        }
    }

    /// gRPC's percent-encoding of `grpc-message`: bytes outside printable ASCII, and '%', as %XX.
    static func percentEncode(_ message: String) -> String {
        guard message.utf8.contains(where: { $0 < 0x20 || $0 > 0x7e || $0 == 0x25 }) else { return message }
        var out = ""
        for b in message.utf8 {
            if b < 0x20 || b > 0x7e || b == 0x25 {
                out += "%" + String(b, radix: 16, uppercase: true).leftPadded(2)
            } else {
                out.unicodeScalars.append(UnicodeScalar(b))
            }
        }
        return out
    }
}

/// Iteration state of one direction of a stream.
private struct Direction<Head> {
    /// Held headers (until every filter passed them).
    var head: Head?
    var headersEndStream = false
    var headersPassed = false
    /// A filter holds this direction at `index`.
    var stopped = false
    var index = 0
    /// The filter that stopped the headers: as in Envoy, it still gets the body and trailers (encoding only).
    var headersHeldAt: Int?
    /// Data held while stopped (or buffered by a filter).
    var buffer: ByteBuffer?
    var trailers: HTTPHeaders?
    /// The end of this direction was received.
    var ended = false
    /// The filter whose `decodeTrailers`/`encodeTrailers` runs (for `addDecodedData`/`addEncodedData`), or -1.
    var trailersAt = -1

    /// The chunk to pass on: what this direction holds followed by `data`; an empty chunk for a bare end of
    /// stream; nil when there is nothing to pass.
    mutating func takeChunk(adding data: ByteBuffer?, endStream: Bool) -> ByteBuffer? {
        if var held = buffer {
            buffer = nil
            if var more = data { held.writeBuffer(&more) }
            return held
        }
        if let data { return data }
        return endStream ? ByteBuffer() : nil
    }

    /// Applies a filter's data status: true when the chunk goes on to the next filter; otherwise this direction
    /// stops at the filter (keeping the chunk when it asked to buffer).
    mutating func goesOn(after status: FilterDataStatus, at i: Int, holding chunk: ByteBuffer) -> Bool {
        switch status {
        case .continue:
            return true
        case .stopIterationAndBuffer:
            stopped = true
            index = i
            buffer = chunk
            return false
        case .stopIterationNoBuffer:
            stopped = true
            index = i
            return false
        }
    }

    mutating func hold(_ data: ByteBuffer) {
        if buffer == nil {
            buffer = data
        } else {
            var d = data
            buffer!.writeBuffer(&d)
        }
    }
}
