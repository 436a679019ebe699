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
    public func render(_ context: FormatContext, into out: inout String) {
        switch format {
        case .text(let f):
            f.format(context, into: &out)
        case .json(let fields, let omitEmpty):
            out += "{"
            var first = true
            var value = ""
            for (key, f) in fields {
                value.removeAll(keepingCapacity: true)
                let rendered: JSONValue = Self.jsonValue(f, context, into: &value)
                if rendered == .null && omitEmpty { continue }
                if !first { out += "," }
                first = false
                Self.appendJSONString(key, to: &out)
                out += ":"
                switch rendered {
                case .null: out += "null"
                case .number: out += value
                case .string: Self.appendJSONString(value, to: &out)
                }
            }
            out += "}\n"
        }
    }

    private enum JSONValue { case null, number, string }

    /// Envoy's JSON formatter: a value that is one numeric command prints as a number, a lone command without a
    /// value as `null`, anything else as a string.
    private static func jsonValue(_ f: SubstitutionFormat, _ context: FormatContext, into out: inout String)
        -> JSONValue
    {
        if f.literal == nil, f.pieces.count == 1, case .command(let c) = f.pieces[0] {
            guard c.render(context, into: &out) else { return .null }
            return c.isNumeric ? .number : .string
        }
        f.format(context, into: &out)
        return .string
    }

    package static func appendJSONString(_ s: String, to out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
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
