import NIOCore
import SidecarCore

/// One span: a request through the connection manager (the server or client span, by traffic direction) or one
/// upstream attempt (the router's child span). Built and finished on its stream's event loop; once finished it
/// is only read (by the exporter's thread), which is why it may cross threads.
package final class Span: @unchecked Sendable {
    package enum Kind: Sendable { case server, client }

    package let trace: TraceID
    package let spanID: UInt64
    /// 0 for a root span.
    package let parentID: UInt64
    package var name: String
    package let kind: Kind
    /// Whether the span is exported (and what the next hop is told).
    package let sampled: Bool
    /// Zipkin's `shared`: a server span that continues its caller's span id (shared_span_context).
    package let shared: Bool
    /// The parent is the caller's span, from another process (OTLP's span flags).
    package let remoteParent: Bool
    /// The caller's `tracestate`, passed on unchanged.
    package let traceState: String
    /// The header family the span's context leaves in.
    package let format: SpanContext.Format
    /// Wall-clock start, nanoseconds since the epoch; the end is the start plus the monotonic time elapsed.
    package let startUnixNanos: UInt64
    private let startUptime: NIODeadline
    package private(set) var endUnixNanos: UInt64 = 0
    package var tags: [SpanTag] = []
    package var error = false
    /// What the downstream span's tags are made of, when the tracer left writing them to the exporter.
    package var deferredTags: DeferredTags?

    package init(trace: TraceID, spanID: UInt64, parentID: UInt64, name: String, kind: Kind, sampled: Bool,
                 shared: Bool = false, remoteParent: Bool = false, traceState: String = "",
                 format: SpanContext.Format, start: StreamStartTime = .now()) {
        self.trace = trace
        self.spanID = spanID
        self.parentID = parentID
        self.name = name
        self.kind = kind
        self.sampled = sampled
        self.shared = shared
        self.remoteParent = remoteParent
        self.traceState = traceState
        self.format = format
        self.startUnixNanos = UInt64(max(0, start.nanosecondsSinceEpoch))
        self.startUptime = start.monotonic
    }

    package var finished: Bool { endUnixNanos != 0 }

    /// Writes the tags the tracer deferred (on the exporter's thread, before encoding).
    package func resolveTags() {
        guard let d = deferredTags else { return }
        deferredTags = nil
        d.tracer.writeTags(self, d.info)
    }

    package func setTag(_ name: String, _ value: String) { tags.append(SpanTag(name: name, value: value)) }

    /// Ends the span now.
    package func finish(at uptime: NIODeadline = .now()) {
        guard endUnixNanos == 0 else { return }
        let elapsed = max(0, (uptime - startUptime).nanoseconds)
        endUnixNanos = startUnixNanos &+ UInt64(elapsed) | (startUnixNanos == 0 ? 1 : 0)
    }

    package var durationMicros: UInt64 { endUnixNanos >= startUnixNanos ? (endUnixNanos - startUnixNanos) / 1000 : 0 }
}

/// A downstream span's tags, left to the exporter: the tracer that writes them and what they are made of.
package struct DeferredTags {
    let tracer: HTTPTracer
    let info: HTTPTracer.DownstreamInfo
}

/// One tag of a span (a struct, not a tuple: arrays of it are copied and destroyed by specialised code).
package struct SpanTag: Sendable, Equatable {
    package var name: String
    package var value: String

    package init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}
