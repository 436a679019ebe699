import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// The HTTP/1 stream lifecycle without a channel: when a stream is finished and what the connection does next.
@Suite struct HTTP1StreamLifecycleTests {
    @Test func aKeepAliveExchangeFinishesWhenBothSidesEndedAndReadsTheNextRequest() {
        var l = HTTP1StreamLifecycle()
        #expect(!l.isOpen)
        l.requestHead(keepAlive: true)
        #expect(l.requestEnded() == .none)
        l.responseHeadCommitted()
        #expect(l.responseStarted && !l.responseComplete)
        #expect(l.responseEnded() == .finishStream)
        #expect(l.streamFinished(draining: false) == .readNextRequest)
        #expect(!l.isOpen && !l.requestComplete && !l.responseStarted)
    }

    @Test func aResponseBeforeTheRequestEndedWaitsForIt() {
        var l = HTTP1StreamLifecycle()
        l.requestHead(keepAlive: true)
        l.responseHeadCommitted()
        #expect(l.responseEnded() == .none)
        #expect(l.requestEnded() == .finishStream)
    }

    @Test func aLocalReplyThatClosesDoesNotWaitForTheRestOfTheRequest() {
        var l = HTTP1StreamLifecycle()
        l.requestHead(keepAlive: true)
        l.localReply(closeConnection: true)
        l.responseHeadCommitted()
        #expect(l.responseEnded() == .finishStream)
        #expect(l.streamFinished(draining: false) == .closeConnection)
    }

    @Test func aLocalReplyOnAKeptAliveConnectionWaitsForTheRequest() {
        var l = HTTP1StreamLifecycle()
        l.requestHead(keepAlive: true)
        l.localReply(closeConnection: false)
        #expect(l.responseEnded() == .none)
        #expect(l.requestEnded() == .finishStream)
        #expect(l.streamFinished(draining: false) == .readNextRequest)
    }

    @Test func connectionCloseOrDrainEndsTheConnectionAfterTheStream() {
        var l = HTTP1StreamLifecycle()
        l.requestHead(keepAlive: false)
        _ = l.requestEnded()
        #expect(l.responseEnded() == .finishStream)
        #expect(l.streamFinished(draining: false) == .closeConnection)
        l.requestHead(keepAlive: true)
        _ = l.requestEnded()
        _ = l.responseEnded()
        #expect(l.streamFinished(draining: true) == .closeConnection)
        l.requestHead(keepAlive: true)
        l.disableKeepAlive()
        _ = l.requestEnded()
        _ = l.responseEnded()
        #expect(l.streamFinished(draining: false) == .closeConnection)
    }

    @Test func eventsWithoutAStreamDoNothing() {
        var l = HTTP1StreamLifecycle()
        #expect(l.requestEnded() == .none)
        l.responseHeadCommitted()
        #expect(l.responseEnded() == .none)
        #expect(!l.isOpen)
        // A new head starts clean: no local-reply close carried over.
        l.requestHead(keepAlive: true)
        l.localReply(closeConnection: true)
        _ = l.streamFinished(draining: false)
        l.requestHead(keepAlive: true)
        #expect(l.keepAlive && !l.closeAfterResponse)
    }
}
