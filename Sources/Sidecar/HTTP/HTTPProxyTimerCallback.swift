import NIOCore

/// What fires a stream's route timeout and stream-idle tick. A scheduled callback whose handler is this struct
/// (one reference and a tag, stored inline in the event loop's task) allocates nothing, where a scheduled task
/// allocates its closure, a promise and a future: on HTTP/2, where every stream is a new handler and arms both,
/// that was six allocations a stream. Holds its handler until it fires or is cancelled, as the task did.
struct HTTPProxyTimerCallback: NIOScheduledCallbackHandler {
    enum Timer {
        case route
        case streamIdle
    }

    let handler: HTTPProxyHandler
    let timer: Timer

    func handleScheduledCallback(eventLoop: some EventLoop) {
        switch timer {
        case .route: handler.routeTimerFired()
        case .streamIdle: handler.idleTimerFired()
        }
    }
}
