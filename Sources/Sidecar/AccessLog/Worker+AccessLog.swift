import NIOCore
import SidecarCore

/// A worker's access log lines not yet handed to the writer thread, by destination. Lines collect here on the
/// event loop (no lock, no syscall per request) and leave as whole buffers: when one passes `flushSize`, or when
/// the worker's flush timer fires (`flushInterval`, Envoy's default `file_flush_interval_msec`), or at shutdown.
struct AccessLogBuffers {
    static let flushSize = 64 * 1024
    static let flushInterval = TimeAmount.seconds(1)

    /// Per destination, the lines not yet handed over. A worker writes to a handful of destinations: a list
    /// searched in order costs less than hashing a path per line.
    var pending: [(destination: AccessLogConfig.Destination, bytes: [UInt8])] = []
    var timerArmed = false
}

extension Worker {
    /// Writes the line of one finished stream (or connection) to each of the loggers whose filter takes it. The
    /// line is rendered straight into its destination's buffer.
    func logAccess(_ logs: [AccessLogConfig], _ context: FormatContext) {
        eventLoop.assertInEventLoop()
        for log in logs {
            if let filter = log.filter {
                let inputs = AccessLogFilter.Inputs(runtime: server.runtime.snapshot, random: { self.random.next() })
                if !filter.evaluate(context, inputs) { continue }
            }
            let i: Int
            if let found = accessLogBuffers.pending.firstIndex(where: { $0.destination == log.destination }) {
                i = found
            } else {
                var bytes: [UInt8] = []
                bytes.reserveCapacity(AccessLogBuffers.flushSize + 4096)
                accessLogBuffers.pending.append((log.destination, bytes))
                i = accessLogBuffers.pending.count - 1
            }
            log.render(context, into: &accessLogBuffers.pending[i].bytes)
            if accessLogBuffers.pending[i].bytes.count >= AccessLogBuffers.flushSize {
                let full = accessLogBuffers.pending.remove(at: i)
                AccessLogWriter.shared.enqueue(full.bytes, to: full.destination)
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
        for (destination, bytes) in accessLogBuffers.pending { AccessLogWriter.shared.enqueue(bytes, to: destination) }
        accessLogBuffers.pending.removeAll()
    }
}
