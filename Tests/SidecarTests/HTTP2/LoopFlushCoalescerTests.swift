import NIOCore
import NIOEmbedded
import SidecarCore
import Testing

/// The flush coalescer below an HTTP/2 codec, on an embedded channel: the flushes of one event-loop turn reach the
/// socket as one, at the turn's end, and a close first flushes what is pending.
struct LoopFlushCoalescerTests {
    /// Counts the flushes that get past the coalescer (it sits between this and the channel's head).
    final class FlushCounter: ChannelOutboundHandler {
        typealias OutboundIn = NIOAny
        var flushes = 0
        func flush(context: ChannelHandlerContext) {
            flushes += 1
            context.flush()
        }
    }

    @Test func flushesOfOneTurnBecomeOneAtItsEnd() throws {
        let channel = EmbeddedChannel()
        let counter = FlushCounter()
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(LoopFlushCoalescer())
        for i in 0..<3 {
            channel.write(ByteBuffer(string: "frame \(i)"), promise: nil)
            channel.flush()
        }
        // Nothing reached the socket yet: the flush waits for the turn's end.
        #expect(counter.flushes == 0)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 1)
        for i in 0..<3 { #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "frame \(i)")) }
        // The next turn flushes again.
        channel.write(ByteBuffer(string: "later"), promise: nil)
        channel.flush()
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 2)
        _ = try channel.finish()
    }

    @Test func aCloseFlushesWhatIsPendingFirst() throws {
        let channel = EmbeddedChannel()
        let counter = FlushCounter()
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(LoopFlushCoalescer())
        channel.write(ByteBuffer(string: "goaway"), promise: nil)
        channel.flush()
        #expect(counter.flushes == 0)
        try channel.close().wait()
        #expect(counter.flushes == 1)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "goaway"))
    }
}
