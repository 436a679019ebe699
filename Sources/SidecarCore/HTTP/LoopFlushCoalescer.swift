import NIOCore

/// Below an HTTP/2 connection's codec (downstream and upstream): the flushes of one event-loop turn become one, at
/// the turn's end.
///
/// Each stream flushes its connection when its message moves on, and a downstream connection's responses arrive on as
/// many upstream connections (an upstream connection's requests from as many downstream ones): one turn of the event
/// loop often reads a dozen of them, and each flush was a `write` of its own (one system call per response, measured
/// with strace under h2load). Here a flush asks the event
/// loop to flush once its ready I/O has been handled (NIO runs tasks after each batch of I/O events), so the frames
/// of every stream answered in that turn leave in one write, as Envoy writes a connection once per dispatcher turn.
/// Nothing waits longer than the turn. A close first flushes what is pending: what was written before a close (a
/// GOAWAY) still goes out.
package final class LoopFlushCoalescer: ChannelOutboundHandler {
    package typealias OutboundIn = NIOAny

    package init() {}
    private var flushPending = false

    package func flush(context: ChannelHandlerContext) {
        guard !flushPending else { return }
        flushPending = true
        context.eventLoop.assumeIsolated().execute { [self] in
            guard flushPending else { return }
            flushPending = false
            context.flush()
        }
    }

    package func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if flushPending {
            flushPending = false
            context.flush()
        }
        context.close(mode: mode, promise: promise)
    }
}

@available(*, unavailable) extension LoopFlushCoalescer: Sendable {}
