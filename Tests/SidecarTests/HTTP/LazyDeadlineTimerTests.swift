import NIOCore
import NIOEmbedded
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// The route timeout's timer: one task across requests, never firing after the deadline it serves.
struct LazyDeadlineTimerTests {
    static func at(_ seconds: Int64) -> NIODeadline { .uptimeNanoseconds(UInt64(seconds) * 1_000_000_000) }

    /// Counts the callbacks that ran.
    final class Fired: NIOScheduledCallbackHandler, @unchecked Sendable {
        var count = 0
        func handleScheduledCallback(eventLoop: some EventLoop) { count += 1 }
    }

    static func schedule(_ loop: EmbeddedEventLoop, _ seconds: Int64, _ fired: Fired = Fired()) -> NIOScheduledCallback {
        try! loop.scheduleCallback(at: at(seconds), handler: fired)
    }

    @Test func theFirstDeadlineSchedulesATask() {
        var t = LazyDeadlineTimer()
        #expect(t.set(Self.at(15)) == Self.at(15))
        #expect(t.isSet)
    }

    @Test func laterDeadlinesReuseTheArmedTaskAndItRearmsWhenItFiresEarly() {
        let loop = EmbeddedEventLoop()
        var t = LazyDeadlineTimer()
        t.armed(.loop(Self.schedule(loop, 15)), at: Self.at(15))
        _ = t.set(Self.at(15))
        t.clear()
        // The next request's deadline is later than the armed task: nothing is scheduled.
        #expect(t.set(Self.at(20)) == nil)
        #expect(t.fired(now: Self.at(15)) == .rearm(Self.at(20)))
    }

    @Test func anEarlierDeadlineReschedules() {
        let loop = EmbeddedEventLoop()
        var t = LazyDeadlineTimer()
        let fired = Fired()
        t.armed(.loop(Self.schedule(loop, 15, fired)), at: Self.at(15))
        #expect(t.set(Self.at(5)) == Self.at(5))
        loop.advanceTime(to: Self.at(16))
        #expect(fired.count == 0, "the callback armed for the later deadline was cancelled")
    }

    @Test func firingAtOrAfterTheDeadlineExpiresItOnce() {
        var t = LazyDeadlineTimer()
        _ = t.set(Self.at(15))
        #expect(t.fired(now: Self.at(15)) == .expired)
        #expect(!t.isSet)
        #expect(t.fired(now: Self.at(16)) == .idle)
    }

    @Test func aClearedDeadlineNeverExpires() {
        var t = LazyDeadlineTimer()
        _ = t.set(Self.at(15))
        t.clear()
        #expect(t.fired(now: Self.at(30)) == .idle)
    }

    @Test func stopCancelsTheTask() {
        let loop = EmbeddedEventLoop()
        var t = LazyDeadlineTimer()
        let fired = Fired()
        _ = t.set(Self.at(15))
        t.armed(.loop(Self.schedule(loop, 15, fired)), at: Self.at(15))
        t.stop()
        loop.advanceTime(to: Self.at(16))
        #expect(fired.count == 0 && !t.isSet)
    }
}
