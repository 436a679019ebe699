import NIOCore

/// A format string with Envoy's `%COMMAND%` substitutions (`*_headers_to_add` values; access log formats),
/// parsed once at config load into literal text and commands. Envoy's `FormatterImpl`.
public struct SubstitutionFormat: Sendable {
    package enum Piece: Sendable, Equatable {
        case text(String)
        case command(FormatCommand)
    }

    package let pieces: [Piece]
    /// The whole value when the format has no command: rendering it costs nothing per request.
    public let literal: String?
    /// What a command without a value renders as: empty in header values, `-` in access logs (Envoy's
    /// `omit_empty_values`).
    public let missing: String

    public struct Options: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// `%REQ_WITHOUT_QUERY(...)%`: Envoy has it only as a formatter extension an access log lists.
        public static let requestWithoutQuery = Options(rawValue: 1)
    }

    public init(parsing text: String, missing: String = "", options: Options = []) throws(FormatSyntaxError) {
        pieces = try Self.parse(text, options: options)
        self.missing = missing
        if pieces.isEmpty {
            literal = ""
        } else if pieces.count == 1, case .text(let t) = pieces[0] {
            literal = t
        } else {
            literal = nil
        }
    }

    /// A config value: an error names its path and line, the format and what is wrong with it.
    package init(parsing text: String, at value: ConfigValue, missing: String = "", options: Options = []) throws {
        do {
            try self.init(parsing: text, missing: missing, options: options)
        } catch {
            throw value.error("format '\(text)': \(error.message)")
        }
    }

    /// The commands of the format, in order.
    public var commands: [FormatCommand] {
        pieces.compactMap { if case .command(let c) = $0 { return c } else { return nil } }
    }

    public func format(_ context: FormatContext) -> String {
        if let literal { return literal }
        var out: [UInt8] = []
        format(context, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    public func format(_ context: FormatContext, into out: inout String) {
        if let literal {
            out += literal
            return
        }
        out += format(context)
    }

    public func format(_ context: FormatContext, into out: inout [UInt8]) {
        if let literal {
            out.appendText(literal)
            return
        }
        // Read in place: a `for piece in pieces` copies each piece (a retain and a release of its payload).
        pieces.withUnsafeBufferPointer { pieces in
            for i in pieces.indices {
                switch pieces[i] {
                case .text(let t): out.appendText(t)
                case .command(let c): if !c.render(context, into: &out) { out.appendText(missing) }
                }
            }
        }
    }
}

extension FormatCommand {
    /// Appends the command's value; false when it has none (the caller writes the format's `missing`). Reads the
    /// context in place: nothing of it is copied.
    package func render(_ c: FormatContext, into out: inout [UInt8]) -> Bool {
        switch self {
        case .requestHeader(let h):
            return h.render(c.requestHeader(h), into: &out)
        case .requestHeaderWithoutQuery(let h):
            guard let value = c.requestHeader(h) else { return false }
            return h.render(value.prefix(while: { $0 != "?" }), into: &out)
        case .responseHeader(let h):
            var value = c.responseHeader(h.name)
            if value == nil, let alternative = h.alternative { value = c.responseHeader(alternative) }
            return h.render(value, into: &out)
        case .responseTrailer(let h):
            var value = c.responseTrailers.first(name: h.name)
            if value == nil, let alternative = h.alternative { value = c.responseTrailers.first(name: alternative) }
            return h.render(value, into: &out)
        case .startTime(let format):
            let ns = c.stream.startTime?.nanosecondsSinceEpoch ?? StreamStartTime.now().nanosecondsSinceEpoch
            format.render(nanosecondsSinceEpoch: ns, into: &out)
        case .duration:
            guard let start = c.stream.startTime?.monotonic else {
                out.append(UInt8(ascii: "0"))
                return true
            }
            Self.milliseconds(from: start, to: c.stream.end ?? c.stream.now ?? .now(), into: &out)
        case .requestDuration:
            guard let start = c.stream.startTime?.monotonic, let end = c.stream.requestEnd else { return false }
            Self.milliseconds(from: start, to: end, into: &out)
        case .responseDuration:
            guard let start = c.stream.startTime?.monotonic, let end = c.stream.upstreamResponseStart else {
                return false
            }
            Self.milliseconds(from: start, to: end, into: &out)
        case .responseCode:
            out.appendDecimal(c.stream.responseCode ?? 0)
        case .responseCodeDetails:
            guard let d = c.stream.responseCodeDetails else { return false }
            out.appendText(d)
        case .responseFlags:
            c.stream.responseFlags.render(long: false, into: &out)
        case .responseFlagsLong:
            c.stream.responseFlags.render(long: true, into: &out)
        case .bytesReceived:
            out.appendDecimal(c.stream.bytesReceived)
        case .bytesSent:
            out.appendDecimal(c.stream.bytesSent)
        case .protocolName:
            guard let p = c.stream.protocolName else { return false }
            out.appendText(p)
        case .upstreamHost:
            guard let h = c.stream.upstreamHost else { return false }
            h.render(.withPort, into: &out)
        case .upstreamCluster:
            guard let name = c.stream.upstreamCluster else { return false }
            out.appendText(name)
        case .upstreamRequestAttemptCount:
            out.appendDecimal(c.stream.upstreamRequestAttemptCount ?? 0)
        case .routeName:
            guard let name = c.stream.routeName, !name.isEmpty else { return false }
            out.appendText(name)
        case .upstreamLocalAddress(let part):
            guard let a = c.stream.upstreamLocalAddress else { return false }
            a.render(part, into: &out)
        case .upstreamTransportFailureReason:
            guard let r = c.stream.upstreamTransportFailureReason, !r.isEmpty else { return false }
            out.appendText(r)
        case .connectionID:
            guard let id = c.stream.connectionID else { return false }
            out.appendDecimal(id)
        case .downstreamPeerURISAN:
            guard let sans = c.stream.downstreamPeerURISAN, !sans.isEmpty else { return false }
            out.appendText(sans)
        case .downstreamRemoteAddress(let part):
            guard let a = c.stream.downstreamRemoteAddress else { return false }
            a.render(part, into: &out)
        case .downstreamDirectRemoteAddress(let part):
            guard let a = c.stream.downstreamDirectRemoteAddress else { return false }
            a.render(part, into: &out)
        case .downstreamLocalAddress(let part):
            guard let a = c.stream.downstreamLocalAddress else { return false }
            a.render(part, into: &out)
        case .requestedServerName:
            guard let name = c.stream.requestedServerName, !name.isEmpty else { return false }
            out.appendText(name)
        case .hostname:
            out.appendText(c.stream.hostname)
        case .streamID:
            guard let id = c.requestHeaders.first(name: "x-request-id") else { return false }
            out.appendText(id)
        }
        return true
    }

    /// Whole milliseconds, as Envoy's duration commands print them.
    private static func milliseconds(from start: NIODeadline, to end: NIODeadline, into out: inout [UInt8]) {
        out.appendDecimal(max(0, (end - start).nanoseconds / 1_000_000))
    }
}

extension FormatContext {
    fileprivate func requestHeader(_ h: HeaderLookup) -> String? {
        if let value = requestHeader(h.name) { return value }
        guard let alternative = h.alternative else { return nil }
        return requestHeader(alternative)
    }
}

extension HeaderLookup {
    /// The value, cut to `maxLength` bytes (Envoy cuts bytes, not characters). Its bytes are copied as one
    /// buffer (`appendText`), not appended as a sequence of code units.
    fileprivate func render(_ value: String?, into out: inout [UInt8]) -> Bool {
        guard var value else { return false }
        value.withUTF8 { append($0, into: &out) }
        return true
    }

    fileprivate func render(_ value: Substring?, into out: inout [UInt8]) -> Bool {
        guard var value else { return false }
        value.withUTF8 { append($0, into: &out) }
        return true
    }

    private func append(_ bytes: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        if let maxLength, bytes.count > maxLength {
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[..<maxLength]))
        } else {
            out.append(contentsOf: bytes)
        }
    }
}
