import NIOCore

/// Below an HTTP/2 connection's codec: the flushes of one event-loop turn become one, at the turn's end.
///
/// Each stream flushes its connection when its response moves on, and the responses of a connection's streams arrive
/// on as many upstream connections: one turn of the event loop often reads a dozen of them, and each flush was a
/// `write` of its own (one system call per response, measured with strace under h2load). Here a flush asks the event
/// loop to flush once its ready I/O has been handled (NIO runs tasks after each batch of I/O events), so the frames
/// of every stream answered in that turn leave in one write, as Envoy writes a connection once per dispatcher turn.
/// Nothing waits longer than the turn. A close first flushes what is pending: what was written before a close (a
/// GOAWAY) still goes out.
final class LoopFlushCoalescer: ChannelOutboundHandler {
    typealias OutboundIn = NIOAny

    private var flushPending = false

    func flush(context: ChannelHandlerContext) {
        guard !flushPending else { return }
        flushPending = true
        context.eventLoop.assumeIsolated().execute { [self] in
            guard flushPending else { return }
            flushPending = false
            context.flush()
        }
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if flushPending {
            flushPending = false
            context.flush()
        }
        context.close(mode: mode, promise: promise)
    }
}

@available(*, unavailable) extension LoopFlushCoalescer: Sendable {}
