import NIOCore
import NIOEmbedded
import Testing

@testable import Sidecar

/// The HTTP/2 streams' timer hub on an embedded event loop (virtual time): entries run at their deadlines, in
/// order, cancelled ones never, and the event loop sees one timer, not one per entry.
struct StreamTimerHubTests {
    final class Log {
        var fired: [String] = []
    }

    struct Mark: NIOScheduledCallbackHandler {
        let log: Log
        let name: String
        func handleScheduledCallback(eventLoop: some EventLoop) { log.fired.append(name) }
    }

    @Test func entriesRunAtTheirDeadlinesInOrderAndCancelledOnesNever() throws {
        let loop = EmbeddedEventLoop()
        let hub = StreamTimerHub(eventLoop: loop)
        let log = Log()
        let start = loop.now
        _ = hub.schedule(at: start + .milliseconds(30), Mark(log: log, name: "c"))
        _ = hub.schedule(at: start + .milliseconds(10), Mark(log: log, name: "a"))
        let cancelled = try #require(hub.schedule(at: start + .milliseconds(20), Mark(log: log, name: "cancelled")))
        _ = hub.schedule(at: start + .milliseconds(20), Mark(log: log, name: "b"))
        hub.cancel(cancelled)
        #expect(hub.count == 3)
        loop.advanceTime(by: .milliseconds(9))
        #expect(log.fired.isEmpty)
        loop.advanceTime(by: .milliseconds(1))
        #expect(log.fired == ["a"])
        loop.advanceTime(by: .milliseconds(25))
        #expect(log.fired == ["a", "b", "c"])
        #expect(hub.count == 0)
        // Cancelling what already ran changes nothing; a later entry arms the hub again.
        hub.cancel(cancelled)
        _ = hub.schedule(at: loop.now + .milliseconds(5), Mark(log: log, name: "d"))
        loop.advanceTime(by: .milliseconds(5))
        #expect(log.fired == ["a", "b", "c", "d"])
    }

    @Test func aStoppedHubRunsNothingAndTakesNothing() throws {
        let loop = EmbeddedEventLoop()
        let hub = StreamTimerHub(eventLoop: loop)
        let log = Log()
        _ = hub.schedule(at: loop.now + .milliseconds(10), Mark(log: log, name: "a"))
        hub.stop()
        #expect(hub.count == 0)
        #expect(hub.schedule(at: loop.now + .milliseconds(1), Mark(log: log, name: "b")) == nil)
        loop.advanceTime(by: .seconds(1))
        #expect(log.fired.isEmpty)
    }

    @Test func anEntryScheduledWhileFiringRunsAtItsOwnDeadline() throws {
        let loop = EmbeddedEventLoop()
        let hub = StreamTimerHub(eventLoop: loop)
        let log = Log()
        struct Rearm: NIOScheduledCallbackHandler {
            let hub: StreamTimerHub
            let log: Log
            func handleScheduledCallback(eventLoop: some EventLoop) {
                log.fired.append("first")
                _ = hub.schedule(at: eventLoop.now + .milliseconds(10), Mark(log: log, name: "second"))
            }
        }
        _ = hub.schedule(at: loop.now + .milliseconds(10), Rearm(hub: hub, log: log))
        loop.advanceTime(by: .milliseconds(10))
        #expect(log.fired == ["first"])
        loop.advanceTime(by: .milliseconds(9))
        #expect(log.fired == ["first"])
        loop.advanceTime(by: .milliseconds(1))
        #expect(log.fired == ["first", "second"])
    }

    @Test func anEntryCancelledByAnEarlierOneOfTheSameBatchDoesNotRun() throws {
        let loop = EmbeddedEventLoop()
        let hub = StreamTimerHub(eventLoop: loop)
        let log = Log()
        final class Slot { var token: StreamTimerHub.Token? }
        let second = Slot()
        struct CancelOther: NIOScheduledCallbackHandler {
            let hub: StreamTimerHub
            let log: Log
            let other: Slot
            func handleScheduledCallback(eventLoop: some EventLoop) {
                log.fired.append("first")
                if let token = other.token { hub.cancel(token) }
            }
        }
        _ = hub.schedule(at: loop.now + .milliseconds(10), CancelOther(hub: hub, log: log, other: second))
        second.token = hub.schedule(at: loop.now + .milliseconds(11), Mark(log: log, name: "second"))
        // Both are due when the hub's timer runs: the first cancels the second, which must not run.
        loop.advanceTime(by: .milliseconds(20))
        #expect(log.fired == ["first"])
        #expect(hub.count == 0)
    }
}
