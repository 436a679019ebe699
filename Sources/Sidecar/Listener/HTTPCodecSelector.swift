import NIOCore
import SidecarCore

/// `codec_type: AUTO` on a connection that did not negotiate its protocol with ALPN: the first bytes decide, as in
/// Envoy. A connection that starts with the HTTP/2 client preface speaks HTTP/2 (prior knowledge, h2c); anything
/// else is HTTP/1. An HTTP/1 request with `Upgrade: h2c` stays HTTP/1 (the upgrade is not offered), as Envoy does.
///
/// It holds the connection's first bytes until they decide (at most the preface's 24), installs the codec's
/// handlers behind itself, makes the connection active for them and hands them the bytes it held. Until then the
/// connection is already the connection manager's: it is counted (`downstream_cx_total`, `_active`; the codec's
/// handler takes over the count), a drain closes it, and the connection idle timeout and max_connection_duration
/// close it.
final class HTTPCodecSelector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// `badPreface`: HTTP/2 by its start but not the whole preface; Envoy closes such a connection without a word.
    enum Decision: Equatable { case undecided, http1, http2, badPreface }

    /// The part of the preface that makes a connection HTTP/2, as in Envoy: `PRI * HTTP/2.0`. A connection that starts
    /// so but breaks the rest of the preface is a bad HTTP/2 connection, not an HTTP/1 request.
    static let prefaceDecides = 14

    /// What `bytes` (the connection's first bytes so far) say.
    static func decide(_ bytes: ByteBufferView) -> Decision {
        var i = 0
        for b in bytes {
            if i == preface.count { break }
            if b != preface[i] { return i < prefaceDecides ? .http1 : .badPreface }
            i += 1
        }
        return i == preface.count ? .http2 : .undecided
    }

    /// Installs the chosen codec; its handler finds the connection counted already.
    typealias Install = (ChannelPipeline.SynchronousOperations, _ http2: Bool) throws -> Void
    private let install: Install
    private let worker: Worker
    private let listener: ListenerRuntime
    private var context: ChannelHandlerContext?
    private var held: ByteBuffer?
    private var decided = false
    /// A bad HTTP/2 preface: the connection is closing, what else it sends is dropped.
    private var refused = false
    private var counted = false
    private var timer: Scheduled<Void>?

    init(worker: Worker, listener: ListenerRuntime, install: @escaping Install) {
        self.worker = worker
        self.listener = listener
        self.install = install
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { start(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        timer?.cancel()
        timer = nil
    }

    // The codec is not installed yet: the connection becomes active for it once the first bytes chose it.
    func channelActive(context: ChannelHandlerContext) { start(context: context) }

    private func start(context: ChannelHandlerContext) {
        guard !counted else { return }
        counted = true
        worker.stats.inc(listener.stats.cxTotal)
        worker.stats.inc(listener.stats.cxActive)
        worker.register(self)
        let common = listener.hcm.commonProtocolOptions
        let limits: [(ProtoDuration, Int)] = [
            common.idleTimeout.map { ($0, listener.stats.cxIdleTimeout) },
            common.maxConnectionDuration.map { ($0, listener.stats.cxMaxDurationReached) },
        ].compactMap { $0 }
        if let (first, stat) = limits.min(by: { $0.0.nanoseconds < $1.0.nanoseconds }) {
            timer = context.eventLoop.scheduleTask(in: first.timeAmount) { [self] in
                timer = nil
                guard !decided, let context = self.context else { return }
                worker.stats.inc(stat)
                context.close(promise: nil)
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if refused { return }
        if decided {
            context.fireChannelRead(data)
            return
        }
        if var h = held {
            h.writeBuffer(&bytes)
            held = h
        } else {
            held = bytes
        }
        switch Self.decide(held!.readableBytesView) {
        case .undecided: return
        case .http1: choose(context: context, http2: false)
        case .http2: choose(context: context, http2: true)
        case .badPreface:
            refused = true
            held = nil
            worker.stats.inc(listener.stats.cxProtocolError)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !decided && counted {
            // Closed before it chose a codec: the count ends here.
            worker.stats.dec(listener.stats.cxActive)
            worker.stats.inc(listener.stats.cxDestroy)
            worker.unregister(self)
        }
        context.fireChannelInactive()
    }

    private func choose(context: ChannelHandlerContext, http2: Bool) {
        decided = true
        timer?.cancel()
        timer = nil
        worker.unregister(self)
        do {
            try install(context.pipeline.syncOperations, http2)
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelActive()
        if let held {
            self.held = nil
            context.fireChannelRead(wrapInboundOut(held))
            context.fireChannelReadComplete()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

extension HTTPCodecSelector: DrainableConnection {
    var listenerGeneration: Int { listener.generation }

    /// No request has started: the connection closes now.
    func drain() {
        guard !decided else { return }
        context?.close(promise: nil)
    }
}

@available(*, unavailable) extension HTTPCodecSelector: Sendable {}
