import NIOCore
import NIOHTTP2
import SidecarCore

/// One HTTP/2 connection to an upstream host, shared by the streams of many requests. It sits behind
/// `NIOHTTP2Handler` on the connection's pipeline and reads what the pool needs from the root stream: the peer's
/// SETTINGS_MAX_CONCURRENT_STREAMS and GOAWAY. Each request's stream is a child channel with the HTTP/1 part
/// translation and an `UpstreamConnection` (see `MultiplexedPool`).
package final class HTTP2UpstreamConnection: ChannelInboundHandler {
    package typealias InboundIn = HTTP2Frame

    package let key: ConnectionPool.Key
    package let host: UpstreamHost
    /// The circuit-breaker priority whose `max_connections` unit this connection holds.
    let priority: CircuitBreakerThresholds.Priority
    unowned let pool: MultiplexedPool
    var multiplexer: NIOHTTP2Handler.StreamMultiplexer?
    private(set) var context: ChannelHandlerContext?

    /// Streams open now, and opened in all (`max_requests_per_connection`).
    var activeStreams = 0
    var streamsOpened = 0
    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS (unlimited until its SETTINGS say otherwise).
    var peerMaxStreams = Int.max
    /// No new stream goes here: the peer sent GOAWAY, or the connection is used up or too old. It closes when
    /// its last stream ends.
    var goingAway = false
    var connectedAt = NIODeadline.now()
    var idleSince = NIODeadline.now()

    init(key: ConnectionPool.Key, host: UpstreamHost, priority: CircuitBreakerThresholds.Priority, pool: MultiplexedPool) {
        self.key = key
        self.host = host
        self.priority = priority
        self.pool = pool
    }

    var isActive: Bool { context?.channel.isActive ?? false }

    package func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    package func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case .settings(.settings(let settings)):
            for s in settings where s.parameter == .maxConcurrentStreams { peerMaxStreams = s.value }
            pool.capacityChanged(self)
        case .goAway:
            goingAway = true
            pool.capacityChanged(self)
        default:
            break
        }
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A stream's error is its own (the stream's channel saw it too); anything else ends the connection.
        if error is NIOHTTP2Errors.StreamError { return }
        context.close(promise: nil)
    }

    func close() {
        goingAway = true
        context?.close(promise: nil)
    }
}

@available(*, unavailable) extension HTTP2UpstreamConnection: Sendable {}
