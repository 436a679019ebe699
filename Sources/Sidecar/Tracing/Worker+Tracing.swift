import NIOCore
import SidecarCore
import SidecarTracing

/// A worker's finished spans not yet handed to their exporters. They collect here on the event loop (no lock
/// per span) and leave as a batch when one reaches `min_flush_spans`, or when the worker's flush timer
/// (`flush_interval_ms`) fires, as Envoy's tracers batch per worker thread.
struct SpanBuffers {
    /// Per exporter: its spans and the batch size, read from the runtime when the batch starts.
    var pending: [ObjectIdentifier: (exporter: SpanExporter, spans: [Span], flushAt: Int)] = [:]
    var timerArmed = false
}

extension Worker {
    func record(_ span: Span, _ exporter: SpanExporter) {
        eventLoop.assertInEventLoop()
        let id = ObjectIdentifier(exporter)
        var full: [Span]?
        if let i = spanBuffers.pending.index(forKey: id) {
            // In place: no copy of the batch, no rehash.
            spanBuffers.pending.values[i].spans.append(span)
            if spanBuffers.pending.values[i].spans.count >= spanBuffers.pending.values[i].flushAt {
                full = spanBuffers.pending.remove(at: i).value.spans
            }
        } else {
            let flushAt = max(1, Int(clamping: server.runtime.snapshot.integer(exporter.minFlushSpansKey, default: 5)))
            if flushAt <= 1 {
                full = [span]
            } else {
                var spans: [Span] = []
                spans.reserveCapacity(flushAt)
                spans.append(span)
                spanBuffers.pending[id] = (exporter, spans, flushAt)
            }
        }
        if let full { exporter.submit(full) }
        if !spanBuffers.timerArmed && !spanBuffers.pending.isEmpty {
            spanBuffers.timerArmed = true
            let runtime = server.runtime.snapshot
            let ms = max(1, Int64(clamping: runtime.integer(exporter.flushIntervalKey, default: 5000)))
            eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(ms)) { [weak self] in
                guard let self else { return }
                self.spanBuffers.timerArmed = false
                self.flushSpans(byTimer: true)
            }
        }
    }

    /// Hands every pending span to its exporter.
    func flushSpans(byTimer: Bool = false) {
        eventLoop.assertInEventLoop()
        guard !spanBuffers.pending.isEmpty else { return }
        for (_, entry) in spanBuffers.pending { entry.exporter.submit(entry.spans, byTimer: byTimer) }
        spanBuffers.pending.removeAll()
    }
}
