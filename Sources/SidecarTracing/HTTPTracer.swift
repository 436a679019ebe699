import NIOCore
import NIOHTTP1
import SidecarCore

/// A connection manager's tracer: how its requests' spans are named, what ids they get from the caller's
/// context, what the next hop is told, and what tags they carry. Shared by every worker; spans are built on the
/// stream's event loop and handed, finished, to the worker's batch for `exporter`.
package final class HTTPTracer: Sendable {
    package enum Provider: Sendable {
        case zipkin(ZipkinTracerConfig)
        case openTelemetry(OpenTelemetryTracerConfig)
    }

    package let config: TracingConfig
    package let provider: Provider?
    /// The listener's `traffic_direction` is OUTBOUND: spans are client spans named "egress …".
    package let egress: Bool
    package let exporter: SpanExporter?
    let nodeID: String
    /// Custom tags whose value is known at start-up (literal, environment).
    let fixedTags: [(String, String)]

    package init(config: TracingConfig, egress: Bool, exporter: SpanExporter?, nodeID: String,
                 environment: [String: String]) {
        self.config = config
        switch config.provider {
        case .zipkin(let z): provider = .zipkin(z)
        case .openTelemetry(let o): provider = .openTelemetry(o)
        case nil: provider = nil
        }
        self.egress = egress
        self.exporter = exporter
        self.nodeID = nodeID
        var fixed: [(String, String)] = []
        for tag in config.customTags {
            switch tag.source {
            case .literal(let v): fixed.append((tag.tag, v))
            case .environment(let name, let def):
                if let v = environment[name] ?? def { fixed.append((tag.tag, v)) }
            case .requestHeader: break
            }
        }
        fixedTags = fixed
    }

    // MARK: The downstream span

    /// The span of a request whose tracing `reason` the request id now carries. `operation`: the route
    /// decorator's (or the caller's `x-envoy-decorator-operation`). nil when the tracer exports nothing.
    /// `start`: when the request began (the stream's start time when it has one).
    package func startSpan(_ headers: HTTPHeaders, reason: TraceReason, operation: String?, host: String,
                           start: StreamStartTime = .now(), random: inout FastRandom) -> Span? {
        guard let provider else { return nil }
        let kind: Span.Kind = egress ? .client : .server
        switch provider {
        case .zipkin(let z):
            var (context, sampledOnly) = TraceHeaders.b3(headers)
            if context == nil, z.w3cPropagation { context = TraceHeaders.w3c(headers) }
            let sampled = context?.sampled ?? sampledOnly ?? reason.traced
            let name = operation ?? host
            guard let context else {
                let low = random.next()
                let trace = TraceID(high: z.traceID128Bit ? random.next() : 0, low: low)
                return Span(trace: trace, spanID: low, parentID: 0, name: name, kind: kind, sampled: sampled,
                            shared: kind == .server && z.sharedSpanContext, format: .b3Multi, start: start)
            }
            let format: SpanContext.Format = context.format == .b3Single ? .b3Single : .b3Multi
            if kind == .server && z.sharedSpanContext {
                return Span(trace: context.trace, spanID: context.spanID, parentID: context.parentID, name: name,
                            kind: kind, sampled: sampled, shared: true, remoteParent: true, format: format, start: start)
            }
            return Span(trace: context.trace, spanID: random.next(), parentID: context.spanID, name: name, kind: kind,
                        sampled: sampled, remoteParent: true, format: format, start: start)
        case .openTelemetry:
            let name = operation ?? (egress ? "egress " + host : "ingress")
            if let context = TraceHeaders.w3c(headers) {
                return Span(trace: context.trace, spanID: random.next(), parentID: context.spanID, name: name,
                            kind: kind, sampled: context.sampled ?? reason.traced, remoteParent: true,
                            traceState: context.traceState, format: .w3c, start: start)
            }
            return Span(trace: TraceID(high: random.next(), low: random.next()), spanID: random.next(), parentID: 0,
                        name: name, kind: kind, sampled: reason.traced, format: .w3c, start: start)
        }
    }

    /// The router's span for one upstream attempt (`start_child_span`, `spawn_upstream_span`).
    package func startChild(of parent: Span, cluster: String, random: inout FastRandom) -> Span {
        Span(trace: parent.trace, spanID: random.next(), parentID: parent.spanID,
             name: "router " + cluster + " egress", kind: .client, sampled: parent.sampled,
             traceState: parent.traceState, format: parent.format)
    }

    /// Writes `span`'s context into the request the next hop receives, in the tracer's header family.
    package func inject(_ span: Span, into headers: inout HTTPHeaders) {
        // Room for what is added: growing the headers copies every one of them.
        headers.reserveCapacity(headers.count + 5)
        switch span.format {
        case .w3c:
            headers.replaceOrAddScanningFirst(name: "traceparent", value: Self.traceparent(span))
            if case .openTelemetry = provider {
                headers.replaceOrAddScanningFirst(name: "tracestate", value: span.traceState)
            }
        case .b3Single:
            var value = TraceHex.encode(trace: span.trace) + "-" + TraceHex.encode(span.spanID)
            value += span.sampled ? "-1" : "-0"
            if span.parentID != 0 { value += "-" + TraceHex.encode(span.parentID) }
            headers.replaceOrAddScanningFirst(name: "b3", value: value)
        case .b3Multi:
            if !TraceHeaders.hasB3Header(headers) {
                // Nothing to replace: the headers are added (one pass over the names instead of four).
                let traceID = TraceHex.encode(trace: span.trace)
                headers.add(name: "x-b3-traceid", value: traceID)
                // A root span's id is its 64-bit trace id (as Envoy's Zipkin tracer makes them): the same text.
                let isRoot = span.trace.high == 0 && span.trace.low == span.spanID
                headers.add(name: "x-b3-spanid", value: isRoot ? traceID : TraceHex.encode(span.spanID))
                if span.parentID != 0 { headers.add(name: "x-b3-parentspanid", value: TraceHex.encode(span.parentID)) }
                headers.add(name: "x-b3-sampled", value: span.sampled ? "1" : "0")
                break
            }
            headers.replaceOrAddScanningFirst(name: "x-b3-traceid", value: TraceHex.encode(trace: span.trace))
            headers.replaceOrAddScanningFirst(name: "x-b3-spanid", value: TraceHex.encode(span.spanID))
            if span.parentID != 0 {
                headers.replaceOrAddScanningFirst(name: "x-b3-parentspanid", value: TraceHex.encode(span.parentID))
            } else if headers.contains(name: "x-b3-parentspanid") {
                headers.remove(name: "x-b3-parentspanid")
            }
            headers.replaceOrAddScanningFirst(name: "x-b3-sampled", value: span.sampled ? "1" : "0")
        }
        if case .zipkin(let z) = provider, z.w3cPropagation, span.format != .w3c {
            headers.replaceOrAddScanningFirst(name: "traceparent", value: Self.traceparent(span))
        }
    }

    static func traceparent(_ span: Span) -> String {
        "00-" + TraceHex.encode(span.trace.high) + TraceHex.encode(span.trace.low) + "-" + TraceHex.encode(span.spanID)
            + (span.sampled ? "-01" : "-00")
    }

    // MARK: Finishing

    /// What the connection manager knows of a request when its stream ends, kept in its span (not an object of
    /// its own: one allocation per span, and one free on the exporter's thread, fewer) until the exporter writes
    /// the tags.
    package struct DownstreamInfo {
        package let requestHeaders: HTTPHeaders
        package let scheme: String
        package let host: String
        package let path: String
        package let method: String
        package let httpProtocol: String
        package let peerAddress: String
        package let requestSize: UInt64
        package let responseSize: UInt64
        package let upstreamCluster: String?
        /// 0: no response was sent.
        package let statusCode: Int
        package let responseFlags: ResponseFlags

        package init(requestHeaders: HTTPHeaders, scheme: String, host: String, path: String, method: String,
                     httpProtocol: String, peerAddress: String, requestSize: UInt64, responseSize: UInt64,
                     upstreamCluster: String?, statusCode: Int, responseFlags: ResponseFlags) {
            self.requestHeaders = requestHeaders
            self.scheme = scheme
            self.host = host
            self.path = path
            self.method = method
            self.httpProtocol = httpProtocol
            self.peerAddress = peerAddress
            self.requestSize = requestSize
            self.responseSize = responseSize
            self.upstreamCluster = upstreamCluster
            self.statusCode = statusCode
            self.responseFlags = responseFlags
        }
    }

    /// Envoy's `finalizeDownstreamSpan`: the tags, the error mark (no response, or 5xx), the end. With
    /// `deferTags`, the span ends now and keeps what the tags are made of; the exporter's thread writes them off the
    /// request path: straight into the report (Zipkin), or into the tag list before encoding (`Span.resolveTags`).
    package func finish(_ span: Span, _ info: DownstreamInfo, deferTags: Bool = false) {
        span.finish()
        if deferTags {
            span.deferredTags = DeferredTags(tracer: self, info: info)
        } else {
            writeTags(span, info)
        }
    }

    func writeTags(_ span: Span, _ info: DownstreamInfo) {
        downstreamTags(info).append(to: span)
    }

    /// The downstream span's tags, as Envoy's `finalizeDownstreamSpan` makes them.
    func downstreamTags(_ info: DownstreamInfo) -> DownstreamSpanTags {
        let h = info.requestHeaders
        // Envoy's buildUrl: the path (the original one when rewritten) is cut to max_path_tag_length bytes, then
        // joined to the scheme and host.
        let fullPath = h.first(name: "x-envoy-original-path") ?? info.path
        let path = fullPath.utf8.count > config.maxPathTagLength
            ? Substring(String(decoding: fullPath.utf8.prefix(config.maxPathTagLength), as: UTF8.self))
            : Substring(fullPath)
        var fromRequest: [(String, String)] = []
        for tag in config.customTags {
            if case .requestHeader(let name, let def) = tag.source, let v = h.first(name: name) ?? def {
                fromRequest.append((tag.tag, v))
            }
        }
        var flags = ""
        info.responseFlags.render(long: false, into: &flags)
        let zone: Bool
        if case .openTelemetry = provider { zone = true } else { zone = false }
        return DownstreamSpanTags(
            nodeID: nodeID, zone: zone, requestID: h.first(name: "x-request-id"),
            clientTraceID: h.first(name: "x-client-trace-id"), scheme: info.scheme, host: info.host, path: path,
            method: info.method, downstreamCluster: h.first(name: "x-envoy-downstream-service-cluster") ?? "-",
            userAgent: h.first(name: "user-agent") ?? "-", httpProtocol: info.httpProtocol,
            peerAddress: info.peerAddress, requestSize: info.requestSize, responseSize: info.responseSize,
            upstreamCluster: info.upstreamCluster, statusCode: UInt64(clamping: info.statusCode),
            responseFlags: flags, fixed: fixedTags, fromRequest: fromRequest)
    }

    /// The router's `finalizeUpstreamSpan` for one attempt. `upstreamAddress`: `host:port`, nil when no host was
    /// reached; `statusCode` 0 when no response came.
    package func finishChild(_ span: Span, cluster: String, upstreamAddress: String?, httpProtocol: String,
                             statusCode: Int, responseFlags: String) {
        span.tags.reserveCapacity(9)
        span.setTag("http.protocol", httpProtocol)
        if let a = upstreamAddress {
            span.setTag("upstream_address", a)
            span.setTag("peer.address", a)
        }
        span.setTag("component", "proxy")
        span.setTag("upstream_cluster", cluster)
        span.setTag("upstream_cluster.name", cluster)
        span.setTag("http.status_code", ShortASCII.decimal(UInt64(clamping: statusCode)))
        span.setTag("response_flags", responseFlags)
        if statusCode == 0 || statusCode >= 500 {
            span.error = true
            span.setTag("error", "true")
        }
        span.finish()
    }
}

