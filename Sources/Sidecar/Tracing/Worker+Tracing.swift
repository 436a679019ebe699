import NIOCore
import SidecarCore
import SidecarTracing

/// A worker's finished spans not yet handed to their exporters. They collect here on the event loop (no lock
/// per span) and leave as a batch when one reaches `min_flush_spans`, or when the worker's flush timer
/// (`flush_interval_ms`) fires, as Envoy's tracers batch per worker thread.
struct SpanBuffers {
    /// One exporter's batch. Its array is kept between batches (emptied, capacity kept): a batch costs no
    /// allocation on the worker.
    struct Entry {
        let exporter: SpanExporter
        var spans: [Span]
        /// The batch size, read from the runtime when the batch starts.
        var flushAt: Int
    }

    /// A handful at most (one per tracer with an exporter), searched in order; entries left empty are dropped
    /// when the flush timer fires, so exporters of a replaced configuration are not kept.
    var entries: [Entry] = []
    var timerArmed = false
}

extension Worker {
    func record(_ span: Span, _ exporter: SpanExporter) {
        eventLoop.assertInEventLoop()
        let i: Int
        if let found = spanBuffers.entries.firstIndex(where: { $0.exporter === exporter }) {
            i = found
        } else {
            spanBuffers.entries.append(SpanBuffers.Entry(exporter: exporter, spans: [], flushAt: 1))
            i = spanBuffers.entries.count - 1
        }
        if spanBuffers.entries[i].spans.isEmpty {
            let flushAt = max(1, Int(clamping: server.runtime.snapshot.integer(exporter.minFlushSpansKey, default: 5)))
            spanBuffers.entries[i].flushAt = flushAt
            spanBuffers.entries[i].spans.reserveCapacity(min(flushAt, 1024))
        }
        spanBuffers.entries[i].spans.append(span)
        if spanBuffers.entries[i].spans.count >= spanBuffers.entries[i].flushAt {
            exporter.submit(spanBuffers.entries[i].spans)
            spanBuffers.entries[i].spans.removeAll(keepingCapacity: true)
            return
        }
        if !spanBuffers.timerArmed {
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
        spanBuffers.entries.removeAll { $0.spans.isEmpty && byTimer }
        for i in spanBuffers.entries.indices where !spanBuffers.entries[i].spans.isEmpty {
            spanBuffers.entries[i].exporter.submit(spanBuffers.entries[i].spans, byTimer: byTimer)
            spanBuffers.entries[i].spans.removeAll(keepingCapacity: true)
        }
    }
}
