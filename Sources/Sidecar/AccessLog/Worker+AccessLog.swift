import NIOCore
import SidecarCore

/// A worker's finished streams not yet handed to the access log thread, which renders and writes them. They
/// collect here on the event loop (no lock, no formatting, no syscall per request) and leave as a batch: when
/// `batchSize` have collected, when the worker's flush timer fires (`flushInterval`, Envoy's default
/// `file_flush_interval_msec`), or at shutdown. A batch holds the streams' headers until it is rendered: the
/// batch size bounds that.
struct AccessLogBuffers {
    static let batchSize = 128
    static let flushInterval = TimeAmount.seconds(1)

    var pending: [AccessLogWriter.Entry] = []
    var timerArmed = false
}

extension Worker {
    /// Logs one finished stream (or connection) to each of the loggers whose filter takes it. Filters are
    /// evaluated here (they read the runtime and draw random numbers on the worker, as in Envoy); the line is
    /// rendered by the access log thread.
    func logAccess(_ logs: [AccessLogConfig], _ context: consuming FormatContext) {
        let context = consume context
        logAccess(logs) { $0 = context }
    }

    /// As `logAccess(_:_:)`, with the context written by `fill` straight into its place in the batch: a context
    /// built elsewhere and moved in was copied field by field (some forty reference-count operations).
    func logAccess(_ logs: [AccessLogConfig], fill: (inout FormatContext) -> Void) {
        eventLoop.assertInEventLoop()
        if accessLogBuffers.pending.isEmpty { accessLogBuffers.pending.reserveCapacity(AccessLogBuffers.batchSize) }
        accessLogBuffers.pending.append(AccessLogWriter.Entry(logs: logs))
        let last = accessLogBuffers.pending.count - 1
        fill(&accessLogBuffers.pending[last].context)
        var selected: UInt64 = 0
        for (i, log) in logs.enumerated() {
            if let filter = log.filter {
                let inputs = AccessLogFilter.Inputs(runtime: server.runtime.snapshot, random: { self.random.next() })
                if !filter.evaluate(accessLogBuffers.pending[last].context, inputs) { continue }
            }
            selected |= 1 << UInt64(i)
        }
        guard selected != 0 else {
            accessLogBuffers.pending.removeLast()
            return
        }
        accessLogBuffers.pending[last].selected = selected
        if accessLogBuffers.pending.count >= AccessLogBuffers.batchSize {
            flushAccessLogs()
            return
        }
        if !accessLogBuffers.timerArmed {
            accessLogBuffers.timerArmed = true
            eventLoop.assumeIsolated().scheduleTask(in: AccessLogBuffers.flushInterval) { [weak self] in
                guard let self else { return }
                self.accessLogBuffers.timerArmed = false
                self.flushAccessLogs()
            }
        }
    }

    /// Hands every pending stream to the access log thread.
    func flushAccessLogs() {
        eventLoop.assertInEventLoop()
        guard !accessLogBuffers.pending.isEmpty else { return }
        AccessLogWriter.shared.enqueue(accessLogBuffers.pending)
        accessLogBuffers.pending = []
    }
}
