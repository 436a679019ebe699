import SidecarCore

/// The tags of a downstream span (Envoy's `finalizeDownstreamSpan`), gathered from what the connection manager
/// knew of the request, before they are written anywhere. The Zipkin exporter writes them straight into its
/// report (`ZipkinJSON`): no tag list, no string per name or number, no joined URL. Everything else takes them as
/// the span's tag list (`append(to:)`). Both go through `visit`, so the two cannot disagree on names or order.
struct DownstreamSpanTags {
    let nodeID: String
    /// OpenTelemetry spans carry the node's zone (empty without a locality); Zipkin spans do not.
    let zone: Bool
    let requestID: String?
    let clientTraceID: String?
    /// `http.url`: the scheme, `://`, the host and the path, cut to `max_path_tag_length` bytes.
    let scheme: String
    let host: String
    let path: Substring
    let method: String
    let downstreamCluster: String
    let userAgent: String
    let httpProtocol: String
    let peerAddress: String
    let requestSize: UInt64
    let responseSize: UInt64
    let upstreamCluster: String?
    let statusCode: UInt64
    let responseFlags: String
    /// The tracer's custom tags known at start-up, then those read from the request.
    let fixed: [(String, String)]
    let fromRequest: [(String, String)]

    /// No response, or a 5xx.
    var error: Bool { statusCode == 0 || statusCode >= 500 }

    /// Every tag in Envoy's order.
    func visit<V: SpanTagVisitor>(_ v: inout V) {
        v.tag("node_id", nodeID)
        if zone { v.tag("zone", "") }
        if let requestID { v.tag("guid:x-request-id", requestID) }
        if let clientTraceID { v.tag("guid:x-client-trace-id", clientTraceID) }
        v.url("http.url", scheme: scheme, host: host, path: path)
        v.tag("http.method", method)
        v.tag("downstream_cluster", downstreamCluster)
        v.tag("user_agent", userAgent)
        v.tag("http.protocol", httpProtocol)
        v.tag("peer.address", peerAddress)
        v.decimal("request_size", requestSize)
        v.decimal("response_size", responseSize)
        v.tag("component", "proxy")
        if let upstreamCluster {
            v.tag("upstream_cluster", upstreamCluster)
            v.tag("upstream_cluster.name", upstreamCluster)
        }
        v.decimal("http.status_code", statusCode)
        v.tag("response_flags", responseFlags)
        for (k, value) in fixed { v.tag(k, value, nameIsClean: false) }
        for (k, value) in fromRequest { v.tag(k, value, nameIsClean: false) }
        if error { v.tag("error", "true") }
    }

    /// Adds the tags to `span`'s list and marks it failed when it is.
    func append(to span: Span) {
        var list = SpanTagList(tags: span.tags)
        span.tags = []
        list.tags.reserveCapacity(list.tags.count + 18 + fixed.count + fromRequest.count)
        visit(&list)
        span.tags = list.tags
        if error { span.error = true }
    }
}

/// What a span's tags are written to, one tag at a time.
protocol SpanTagVisitor {
    /// `nameIsClean`: the name is one of Envoy's (no byte of it needs a JSON escape); custom tags' names are not.
    mutating func tag(_ name: String, _ value: String, nameIsClean: Bool)
    /// A tag whose value is `value` in decimal.
    mutating func decimal(_ name: String, _ value: UInt64)
    /// A tag whose value is `scheme://host` followed by `path`.
    mutating func url(_ name: String, scheme: String, host: String, path: Substring)
}

extension SpanTagVisitor {
    mutating func tag(_ name: String, _ value: String) { tag(name, value, nameIsClean: true) }
}

/// Tags as a span's list of names and values.
struct SpanTagList: SpanTagVisitor {
    var tags: [SpanTag]

    mutating func tag(_ name: String, _ value: String, nameIsClean: Bool) {
        tags.append(SpanTag(name: name, value: value))
    }

    mutating func decimal(_ name: String, _ value: UInt64) { tag(name, ShortASCII.decimal(value)) }

    mutating func url(_ name: String, scheme: String, host: String, path: Substring) {
        var url = scheme
        url.reserveCapacity(scheme.utf8.count + 3 + host.utf8.count + path.utf8.count)
        url += "://"
        url += host
        url += path
        tag(name, url)
    }
}
