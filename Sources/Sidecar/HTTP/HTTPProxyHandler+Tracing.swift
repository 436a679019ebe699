import NIOCore
import NIOHTTP1
import SidecarCore
import SidecarTracing

/// The connection manager's tracing stage (Envoy's `ActiveStream::traceRequest` and the router's span
/// handling): after the route is chosen, the request id gets the tracing decision and the request its span;
/// each upstream attempt carries the span's context (or its own child span's); when the stream ends, the span
/// is tagged, finished and handed to the worker's batch for the tracer's exporter. A connection manager without
/// `tracing` pays one nil check per request.
extension HTTPProxyHandler {
    /// Decides and starts the span. `headers` are the request's as the filters will see them: the request id
    /// may change its trace digit, and the decorator header is read (ingress) or written (egress).
    /// `decided`: the reason already in a request id the connection manager made this request;
    /// `hasClientTraceID`: the request carries `x-client-trace-id` (and it is not an internal-only header).
    func startTracing(_ tracer: HTTPTracer, _ headers: inout HTTPHeaders, route: RouteDecision, authority: String,
                      decided: TraceReason?, hasClientTraceID: Bool) {
        let reason: TraceReason
        if let decided {
            reason = decided
        } else {
            // x-envoy-force-trace counts only on an internal request; with no internal_address_config (refused by
            // Pilotfish, and empty by default in Envoy 1.40) none is, and the connection manager has stripped it.
            let (r, rewritten) = TracingDecision.decide(
                requestID: headers.first(name: "x-request-id"), hasClientTraceID: hasClientTraceID, forceTrace: false,
                config: tracer.config, runtime: worker.server.runtime.snapshot, random: worker.random.next())
            if let rewritten { headers.setKeepingPosition(name: "x-request-id", value: rewritten) }
            reason = r
        }
        var decorator: RouteDecorator?
        if case .forward(let target) = route { decorator = target.decorator }
        // Ingress: the caller's x-envoy-decorator-operation names the span (and the response then says nothing).
        var operation = decorator?.operation
        traceDecoratorResponse = nil
        if !tracer.egress {
            if let callers = headers.first(name: "x-envoy-decorator-operation") {
                operation = callers
                headers.remove(name: "x-envoy-decorator-operation")
            } else if let decorator, decorator.propagate {
                traceDecoratorResponse = decorator.operation
            }
        } else if let decorator, decorator.propagate {
            headers.setKeepingPosition(name: "x-envoy-decorator-operation", value: decorator.operation)
        }
        activeSpan = tracer.startSpan(headers, reason: reason, operation: operation, host: authority,
                                      start: streamStart ?? .now(), random: &worker.random)
    }

    /// Whether each attempt writes its own trace context: with a child span per attempt, or when the attempt
    /// count header goes before the context (as Envoy orders them). Otherwise the router writes it once.
    func tracesPerAttempt(_ target: ForwardTarget) -> Bool {
        listener.startChildSpan || target.includeRequestAttemptCount
    }

    /// The request's span context, written once into the head every attempt copies.
    func injectTrace(into headers: inout HTTPHeaders) {
        guard let span = activeSpan, let tracer = listener.tracer else { return }
        tracer.inject(span, into: &headers)
    }

    /// The context the upstream attempt carries: the request's span, or a child span of its own.
    func injectTrace(_ up: UpstreamRequest, into headers: inout HTTPHeaders) {
        guard let span = activeSpan, let tracer = listener.tracer else { return }
        if listener.startChildSpan {
            let child = tracer.startChild(of: span, cluster: up.info.config.name, random: &worker.random)
            up.childSpan = child
            up.childStatus = 0
            tracer.inject(child, into: &headers)
        } else {
            tracer.inject(span, into: &headers)
        }
    }

    /// Ends the attempt's child span (response complete, attempt failed or abandoned).
    func finishChildSpan(_ up: UpstreamRequest) {
        guard let child = up.childSpan, let tracer = listener.tracer else { return }
        up.childSpan = nil
        var flags = ""
        responseFlags.render(long: false, into: &flags)
        tracer.finishChild(child, cluster: up.info.config.name,
                           upstreamAddress: up.host.map { Self.hostPort($0.address) },
                           httpProtocol: "HTTP/1.1", statusCode: up.childStatus, responseFlags: flags)
        recordSpan(child, tracer)
    }

    /// Ends the request's span with Envoy's tags: call when the stream ends, before its state is reset.
    func finishTracing() {
        guard let span = activeSpan, let tracer = listener.tracer else { return }
        activeSpan = nil
        if let up = upstream { finishChildSpan(up) }
        let request = stream.request
        // The peer's text is made once per connection.
        makeDownstreamAddressTexts()
        let peer = downstreamRemoteText?.ip ?? ""
        // With an exporter, tags are written on its thread; an unsampled span is never exported, so its tags are
        // never written at all.
        tracer.finish(span, HTTPTracer.DownstreamInfo(
            requestHeaders: request.headers, scheme: request.scheme, host: request.authority, path: request.path,
            method: request.method, httpProtocol: protocolName,
            peerAddress: peer, requestSize: bytesReceived, responseSize: bytesSent, upstreamCluster: cluster?.config.name,
            statusCode: responseCode ?? 0, responseFlags: responseFlags), deferTags: tracer.exporter != nil)
        recordSpan(span, tracer)
    }

    private func recordSpan(_ span: Span, _ tracer: HTTPTracer) {
        guard span.sampled, let exporter = tracer.exporter else { return }
        worker.record(span, exporter)
    }

    static func hostPort(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return address.protocol == .inet6 ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}
