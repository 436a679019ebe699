import NIOHTTP1

/// What a request brought of its caller's trace: the ids of the caller's span, its sampling decision, and the
/// header family it came in (the tracer answers in the same one).
package struct SpanContext: Sendable, Equatable {
    package enum Format: Sendable, Equatable {
        /// `x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`, `x-b3-flags`.
        case b3Multi
        /// `b3: {traceid}-{spanid}[-{sampled}[-{parentspanid}]]`.
        case b3Single
        /// W3C `traceparent` (and `tracestate`).
        case w3c
    }

    package var trace: TraceID
    package var spanID: UInt64
    /// The caller's parent (B3 only); 0 for none.
    package var parentID: UInt64 = 0
    /// nil: the caller left the decision to us.
    package var sampled: Bool?
    package var traceState = ""
    package var format: Format
}

/// Reading a caller's context from request headers: W3C Trace Context and B3, each as its specification says.
/// A malformed header is no context (the request starts a new trace), never an error to the client.
package enum TraceHeaders {
    /// `traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>` (and `tracestate` with it).
    /// Version ff, all-zero ids and upper-case digits are invalid; a version above 00 may carry more fields.
    package static func w3c(_ headers: HTTPHeaders) -> SpanContext? {
        guard let value = headers.first(name: "traceparent") else { return nil }
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[0].utf8.count == 2, parts[1].utf8.count == 32, parts[2].utf8.count == 16,
              parts[3].utf8.count == 2, parts.prefix(4).allSatisfy(isLowerHex)
        else { return nil }
        guard let version = TraceHex.decode(parts[0]), version != 0xFF, version > 0 || parts.count == 4,
              let trace = TraceHex.decodeTrace(parts[1]), !trace.isZero,
              let span = TraceHex.decode(parts[2]), span != 0,
              let flags = TraceHex.decode(parts[3])
        else { return nil }
        var context = SpanContext(trace: trace, spanID: span, sampled: flags & 1 == 1, format: .w3c)
        context.traceState = headers[canonicalForm: "tracestate"].joined(separator: ",")
        return context
    }

    /// B3, multi-header first, then the single `b3` header. Also returns a bare sampling decision
    /// (`x-b3-sampled` or `b3: 0|1|d` without ids) as `sampledOnly`.
    package static func b3(_ headers: HTTPHeaders) -> (context: SpanContext?, sampledOnly: Bool?) {
        // Most requests carry no B3 header: one pass over the names says so, instead of five lookups.
        guard hasB3Header(headers) else { return (nil, nil) }
        let traceText = headers.first(name: "x-b3-traceid")
        let spanText = headers.first(name: "x-b3-spanid")
        let flags = headers.first(name: "x-b3-flags")
        var sampled = headers.first(name: "x-b3-sampled").flatMap(sampledValue)
        if flags == "1" { sampled = true }
        if let traceText, let spanText {
            guard let trace = TraceHex.decodeTrace(traceText), !trace.isZero,
                  spanText.utf8.count == 16, let span = TraceHex.decode(spanText)
            else { return (nil, sampled) }
            var context = SpanContext(trace: trace, spanID: span, sampled: sampled, format: .b3Multi)
            if let p = headers.first(name: "x-b3-parentspanid") {
                guard p.utf8.count == 16, let parent = TraceHex.decode(p) else { return (nil, sampled) }
                context.parentID = parent
            }
            return (context, sampled)
        }
        if sampled != nil { return (nil, sampled) }
        guard let single = headers.first(name: "b3") else { return (nil, nil) }
        let parts = single.split(separator: "-", omittingEmptySubsequences: false)
        if parts.count == 1 { return (nil, sampledValue(String(parts[0]))) }
        guard parts.count >= 2, parts.count <= 4, let trace = TraceHex.decodeTrace(parts[0]), !trace.isZero,
              parts[1].utf8.count == 16, let span = TraceHex.decode(parts[1])
        else { return (nil, nil) }
        var context = SpanContext(trace: trace, spanID: span, format: .b3Single)
        if parts.count >= 3 {
            guard let s = sampledValue(String(parts[2])) else { return (nil, nil) }
            context.sampled = s
        }
        if parts.count == 4 {
            guard parts[3].utf8.count == 16, let parent = TraceHex.decode(parts[3]) else { return (nil, nil) }
            context.parentID = parent
        }
        return (context, context.sampled)
    }

    /// Whether any header is `b3` or `x-b3-*`, in any case.
    package static func hasB3Header(_ headers: HTTPHeaders) -> Bool {
        for (name, _) in headers {
            var name = name
            let found = name.withUTF8 { n -> Bool in
                if n.count == 2 { return n[0] | 0x20 == UInt8(ascii: "b") && n[1] == UInt8(ascii: "3") }
                return n.count > 5 && n[0] | 0x20 == UInt8(ascii: "x") && n[1] == UInt8(ascii: "-")
                    && n[2] | 0x20 == UInt8(ascii: "b") && n[3] == UInt8(ascii: "3") && n[4] == UInt8(ascii: "-")
            }
            if found { return true }
        }
        return false
    }

    /// B3's sampling values: `1`/`true`/`d` (debug) sample, `0`/`false` do not.
    static func sampledValue(_ text: String) -> Bool? {
        switch text {
        case "1", "true", "d": true
        case "0", "false": false
        default: nil
        }
    }

    private static func isLowerHex(_ s: Substring) -> Bool {
        s.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
}
