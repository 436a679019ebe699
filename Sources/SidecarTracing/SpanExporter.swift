import Glibc
import Atomics
import NIOConcurrencyHelpers
import NIOCore
import SidecarCore

/// Sends one report of finished spans to a collector; runs on its exporter's event loop.
protocol SpanTransport: AnyObject {
    func send(_ spans: [Span]) -> EventLoopFuture<Void>
    /// Closes the collector connection (at shutdown, before the exporter's event loop stops).
    func close()
}

/// One tracer's export queue: workers hand it their batches (a lock per batch, not per span); its own event loop
/// sends them, one report at a time, everything queued meanwhile going into the next report. Bounded: past
/// `maxPending` spans, a batch's spans are dropped and counted, so a dead or slow collector costs memory up to
/// the bound and no request latency.
///
/// A worker does not wake the exporter's thread per batch: the first batch into an idle queue arms a pump
/// `collectDelay` later, and what arrives meanwhile joins it; after each report the next pump is again
/// `collectDelay` away (at once only when a full report is waiting). Waking another thread is a system call on the
/// worker; this way there are at most 1/`collectDelay` of them a second, and reports are larger (fewer POSTs for
/// the exporter and the collector).
package final class SpanExporter: @unchecked Sendable {
    package enum Kind: String, Sendable {
        case zipkin
        case openTelemetry = "opentelemetry"
    }

    package let kind: Kind
    let loop: EventLoop
    private var transport: SpanTransport!
    private let lock = NIOLock()
    private var pending: [Span] = []
    /// A pump is armed, or a report is in flight.
    private var pumping = false
    private let collectDelay = TimeAmount.milliseconds(5)
    private let maxPending: Int
    private let maxPerReport = 1000
    /// Touched on `loop` only.
    private var lastReportSucceeded = true

    package let spansSent = ManagedAtomic<Int>(0)
    package let spansDropped = ManagedAtomic<Int>(0)
    package let reportsSent = ManagedAtomic<Int>(0)
    package let reportsFailed = ManagedAtomic<Int>(0)
    package let timerFlushed = ManagedAtomic<Int>(0)

    private init(kind: Kind, loop: EventLoop, maxPending: Int) {
        self.kind = kind
        self.loop = loop
        self.maxPending = maxPending
        minFlushSpansKey = "tracing.\(kind.rawValue).min_flush_spans"
        flushIntervalKey = "tracing.\(kind.rawValue).flush_interval_ms"
    }

    /// An exporter over `transport` (tests).
    convenience init(kind: Kind, loop: EventLoop, maxPending: Int, transport: SpanTransport) {
        self.init(kind: kind, loop: loop, maxPending: maxPending)
        self.transport = transport
    }

    /// The exporter a tracer config asks for. `resolve` names the collector cluster's host to send to now.
    package static func make(_ provider: TracerConfig, loop: EventLoop, localAddress: String, serviceCluster: String,
                             resolve: @escaping @Sendable () -> SocketAddress?, maxPending: Int = 10_000) -> SpanExporter {
        switch provider {
        case .zipkin(let z):
            let e = SpanExporter(kind: .zipkin, loop: loop, maxPending: maxPending)
            e.transport = ZipkinTransport(config: z, loop: loop, localEndpoint: ZipkinJSON.Endpoint(
                serviceName: serviceCluster, address: localAddress), resolve: resolve)
            return e
        case .openTelemetry(let o):
            let e = SpanExporter(kind: .openTelemetry, loop: loop, maxPending: maxPending)
            let resource = OTLPEncoding.Resource(serviceName: o.serviceName)
            switch o.transport {
            case .grpc(_, let authority, let timeout):
                e.transport = OTLPGRPCTransport(loop: loop, resource: resource, authority: authority,
                                                timeout: timeout?.timeAmount ?? .seconds(5), resolve: resolve)
            case .http(_, let path, let authority, let timeout, let headers):
                e.transport = OTLPHTTPTransport(loop: loop, resource: resource, path: path, authority: authority,
                                                timeout: timeout.timeAmount, headers: headers, resolve: resolve)
            }
            return e
        }
    }

    /// The stat names Envoy gives this tracer's counters (`spans_dropped` is Pilotfish's own: the bound).
    package func registerStats(_ r: StatsRegistry) {
        let p = "tracing.\(kind.rawValue)."
        let reports = kind == .zipkin ? "reports_" : "http_reports_"
        for (name, counter) in [("spans_sent", spansSent), ("spans_dropped", spansDropped),
                                (reports + "sent", reportsSent), (reports + "failed", reportsFailed),
                                ("timer_flushed", timerFlushed)] {
            r.registerComputed(p + name, kind: .counter, family: p + name) { counter.load(ordering: .relaxed) }
        }
    }

    /// Runtime keys as Envoy's: `tracing.<kind>.min_flush_spans` (default 5) and `.flush_interval_ms` (5000).
    /// Made once: the worker reads them per batch.
    package let minFlushSpansKey: String
    package let flushIntervalKey: String

    /// Queues a worker's finished spans (`byTimer`: the worker's flush interval sent them, not the batch size).
    package func submit(_ spans: [Span], byTimer: Bool = false) {
        if byTimer { timerFlushed.wrappingIncrement(ordering: .relaxed) }
        var dropped = 0
        let start: Bool = lock.withLock {
            let room = maxPending - pending.count
            if spans.count > room {
                dropped = spans.count - max(room, 0)
                if room > 0 { pending.append(contentsOf: spans.prefix(room)) }
            } else {
                pending.append(contentsOf: spans)
            }
            if pumping || pending.isEmpty { return false }
            pumping = true
            return true
        }
        if dropped > 0 { spansDropped.wrappingIncrement(by: dropped, ordering: .relaxed) }
        if start { loop.scheduleTask(in: collectDelay) { self.pump() } }
    }

    private func pump() {
        let batch: [Span] = lock.withLock {
            let n = min(pending.count, maxPerReport)
            let batch = Array(pending.prefix(n))
            pending.removeFirst(n)
            if batch.isEmpty { pumping = false }
            return batch
        }
        guard !batch.isEmpty else { return }
        transport.send(batch).whenComplete { [self] result in
            switch result {
            case .success:
                lastReportSucceeded = true
                reportsSent.wrappingIncrement(ordering: .relaxed)
                spansSent.wrappingIncrement(by: batch.count, ordering: .relaxed)
            case .failure(let error):
                // The first failure in a row is logged; the rest only counted (a dead collector is not news
                // every five seconds).
                if reportsFailed.wrappingIncrementThenLoad(ordering: .relaxed) == 1 || lastReportSucceeded {
                    Log.warning("span report failed", [("tracer", kind.rawValue), ("error", "\(error)")])
                }
                lastReportSucceeded = false
            }
            // The next report collects for `collectDelay` too, unless a full one is already waiting: sent at once,
            // the next reports carried only what arrived during the previous one's round trip (many small POSTs,
            // each a wake-up of the collector).
            if lock.withLock({ pending.count >= maxPerReport }) {
                pump()
            } else {
                loop.scheduleTask(in: collectDelay) { self.pump() }
            }
        }
    }

    /// Waits (up to `timeout`) until everything queued has been sent or has failed, then closes the collector
    /// connection: for shutdown.
    package func drain(timeout: TimeAmount) {
        let deadline = NIODeadline.now() + timeout
        while NIODeadline.now() < deadline {
            if lock.withLock({ !pumping && pending.isEmpty }) { break }
            usleep(10_000)
        }
        try? loop.submit { self.transport.close() }.wait()
    }
}
