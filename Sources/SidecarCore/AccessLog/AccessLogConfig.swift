/// One `access_log` entry of a connection manager, a tcp_proxy or a listener: where its lines go, how each is
/// rendered and which streams it takes (its `filter`). Envoy's file and stream access loggers: a request is logged
/// when its stream ends, a connection when it closes.
public struct AccessLogConfig: Sendable {
    /// Where the lines are written; equal destinations share one file.
    public enum Destination: Sendable, Hashable {
        case file(path: String)
        case stdout
        case stderr
    }

    public enum Format: Sendable {
        /// `text_format_source.inline_string`, `text_format` or the default format: one line, as written.
        case text(SubstitutionFormat)
        /// `json_format`: one JSON object per line, keys sorted as Envoy prints them.
        case json([(key: String, value: SubstitutionFormat)], omitEmpty: Bool)
    }

    public var destination: Destination
    public var format: Format
    /// Nil: every stream is logged.
    public var filter: AccessLogFilter?

    public init(destination: Destination, format: Format, filter: AccessLogFilter? = nil) {
        self.destination = destination
        self.format = format
        self.filter = filter
    }

    /// Envoy's default access log format (`DEFAULT_FORMAT` in `source/common/formatter/substitution_formatter.h`).
    public static let defaultFormat =
        "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% "
        + "%RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "
        + "\"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" "
        + "\"%UPSTREAM_HOST%\"\n"

    /// The line for the stream `context` describes, newline included for JSON (text formats carry their own).
    public func render(_ context: FormatContext, into out: inout [UInt8]) {
        switch format {
        case .text(let f):
            f.format(context, into: &out)
        case .json(let fields, let omitEmpty):
            out.append(UInt8(ascii: "{"))
            var first = true
            for (key, f) in fields {
                // The value is rendered after the key, in place; an omitted one is cut off again.
                let mark = out.count
                if !first { out.append(UInt8(ascii: ",")) }
                Self.appendJSONString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                if !Self.appendJSONValue(f, context, to: &out) && omitEmpty {
                    out.removeSubrange(mark...)
                    continue
                }
                first = false
            }
            out.append(contentsOf: [UInt8(ascii: "}"), UInt8(ascii: "\n")])
        }
    }

    /// The line as text (tests).
    public func render(_ context: FormatContext, into out: inout String) {
        var bytes: [UInt8] = []
        render(context, into: &bytes)
        out += String(decoding: bytes, as: UTF8.self)
    }

    /// Envoy's JSON formatter: a value that is one numeric command prints as a number, a lone command without a
    /// value as `null` (false is returned then), anything else as a string.
    private static func appendJSONValue(_ f: SubstitutionFormat, _ context: FormatContext, to out: inout [UInt8])
        -> Bool
    {
        if f.literal == nil, f.pieces.count == 1, case .command(let c) = f.pieces[0] {
            let start = out.count
            if c.isNumeric {
                guard c.render(context, into: &out) else {
                    out.appendText("null")
                    return false
                }
                return true
            }
            out.append(UInt8(ascii: "\""))
            guard c.render(context, into: &out) else {
                out.removeSubrange(start...)
                out.appendText("null")
                return false
            }
            out.escapeJSON(from: start + 1)
            out.append(UInt8(ascii: "\""))
            return true
        }
        let start = out.count
        out.append(UInt8(ascii: "\""))
        f.format(context, into: &out)
        out.escapeJSON(from: start + 1)
        out.append(UInt8(ascii: "\""))
        return true
    }

    package static func appendJSONString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        let start = out.count
        out.appendText(s)
        out.escapeJSON(from: start)
        out.append(UInt8(ascii: "\""))
    }
}

extension FormatCommand {
    /// Commands whose value Envoy's JSON access log prints as a number.
    package var isNumeric: Bool {
        switch self {
        case .duration, .requestDuration, .responseDuration, .responseCode, .bytesReceived, .bytesSent,
             .upstreamRequestAttemptCount, .connectionID:
            return true
        case .requestHeader, .responseHeader, .responseTrailer, .requestHeaderWithoutQuery, .startTime,
             .responseFlags, .responseFlagsLong, .protocolName, .upstreamHost, .upstreamCluster, .routeName,
             .downstreamRemoteAddress, .downstreamDirectRemoteAddress, .downstreamLocalAddress,
             .requestedServerName, .hostname, .streamID, .responseCodeDetails, .upstreamLocalAddress,
             .upstreamTransportFailureReason, .downstreamPeerURISAN:
            return false
        }
    }
}
