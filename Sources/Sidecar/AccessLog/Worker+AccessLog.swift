import NIOCore
import SidecarCore

/// A worker's access log lines not yet handed to the writer thread, by destination. Lines collect here on the
/// event loop (no lock, no syscall per request) and leave as whole buffers: when one passes `flushSize`, or when
/// the worker's flush timer fires (`flushInterval`, Envoy's default `file_flush_interval_msec`), or at shutdown.
struct AccessLogBuffers {
    static let flushSize = 64 * 1024
    static let flushInterval = TimeAmount.seconds(1)

    var pending: [AccessLogConfig.Destination: [UInt8]] = [:]
    var timerArmed = false
}

extension Worker {
    /// Writes the line of one finished stream (or connection) to each of the loggers whose filter takes it.
    func logAccess(_ logs: [AccessLogConfig], _ context: FormatContext) {
        eventLoop.assertInEventLoop()
        var line = ""
        for log in logs {
            if let filter = log.filter {
                let inputs = AccessLogFilter.Inputs(runtime: server.runtime.snapshot, random: { self.random.next() })
                if !filter.evaluate(context, inputs) { continue }
            }
            line.removeAll(keepingCapacity: true)
            log.render(context, into: &line)
            var buffer = accessLogBuffers.pending.removeValue(forKey: log.destination) ?? []
            buffer.append(contentsOf: line.utf8)
            if buffer.count >= AccessLogBuffers.flushSize {
                AccessLogWriter.shared.enqueue(buffer, to: log.destination)
            } else {
                accessLogBuffers.pending[log.destination] = buffer
            }
        }
        if !accessLogBuffers.timerArmed && !accessLogBuffers.pending.isEmpty {
            accessLogBuffers.timerArmed = true
            eventLoop.assumeIsolated().scheduleTask(in: AccessLogBuffers.flushInterval) { [weak self] in
                guard let self else { return }
                self.accessLogBuffers.timerArmed = false
                self.flushAccessLogs()
            }
        }
    }

    /// Hands every pending line to the writer thread.
    func flushAccessLogs() {
        eventLoop.assertInEventLoop()
        guard !accessLogBuffers.pending.isEmpty else { return }
        for (destination, buffer) in accessLogBuffers.pending { AccessLogWriter.shared.enqueue(buffer, to: destination) }
        accessLogBuffers.pending.removeAll()
    }
}
