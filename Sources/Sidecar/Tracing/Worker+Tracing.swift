import NIOCore
import SidecarCore
import SidecarTracing

/// A worker's finished spans not yet handed to their exporters. They collect here on the event loop (no lock
/// per span) and leave as a batch when one reaches `min_flush_spans`, or when the worker's flush timer
/// (`flush_interval_ms`) fires, as Envoy's tracers batch per worker thread.
struct SpanBuffers {
    var pending: [ObjectIdentifier: (exporter: SpanExporter, spans: [Span])] = [:]
    var timerArmed = false
}

extension Worker {
    func record(_ span: Span, _ exporter: SpanExporter) {
        eventLoop.assertInEventLoop()
        let id = ObjectIdentifier(exporter)
        var entry = spanBuffers.pending.removeValue(forKey: id) ?? (exporter, [])
        entry.spans.append(span)
        let runtime = server.runtime.snapshot
        let minFlush = max(1, Int(clamping: runtime.integer(exporter.minFlushSpansKey, default: 5)))
        if entry.spans.count >= minFlush {
            exporter.submit(entry.spans)
        } else {
            spanBuffers.pending[id] = entry
        }
        if !spanBuffers.timerArmed && !spanBuffers.pending.isEmpty {
            spanBuffers.timerArmed = true
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
