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
        var out = ""
        format(context, into: &out)
        return out
    }

    public func format(_ context: FormatContext, into out: inout String) {
        if let literal {
            out += literal
            return
        }
        for piece in pieces {
            switch piece {
            case .text(let t): out += t
            case .command(let c): if !c.render(context, into: &out) { out += missing }
            }
        }
    }
}

extension FormatCommand {
    /// Appends the command's value; false when it has none (the caller writes the format's `missing`).
    package func render(_ c: FormatContext, into out: inout String) -> Bool {
        let info = c.stream
        switch self {
        case .requestHeader(let h):
            return h.render(c.requestHeader, into: &out)
        case .requestHeaderWithoutQuery(let h):
            return h.render({ c.requestHeader($0).map { String($0.prefix(while: { $0 != "?" })) } }, into: &out)
        case .responseHeader(let h):
            return h.render(c.responseHeader, into: &out)
        case .responseTrailer(let h):
            return h.render({ c.responseTrailers.first(name: $0) }, into: &out)
        case .startTime(let format):
            let ns = info.startTime?.nanosecondsSinceEpoch ?? StreamStartTime.now().nanosecondsSinceEpoch
            format.render(nanosecondsSinceEpoch: ns, into: &out)
        case .duration:
            guard let start = info.startTime?.monotonic else { out += "0"; return true }
            out += Self.milliseconds(from: start, to: info.end ?? info.now ?? .now())
        case .requestDuration:
            guard let start = info.startTime?.monotonic, let end = info.requestEnd else { return false }
            out += Self.milliseconds(from: start, to: end)
        case .responseDuration:
            guard let start = info.startTime?.monotonic, let end = info.upstreamResponseStart else { return false }
            out += Self.milliseconds(from: start, to: end)
        case .responseCode:
            out += String(info.responseCode ?? 0)
        case .responseCodeDetails:
            guard let d = info.responseCodeDetails else { return false }
            out += d
        case .responseFlags:
            info.responseFlags.render(long: false, into: &out)
        case .responseFlagsLong:
            info.responseFlags.render(long: true, into: &out)
        case .bytesReceived:
            out += String(info.bytesReceived)
        case .bytesSent:
            out += String(info.bytesSent)
        case .protocolName:
            guard let p = info.protocolName else { return false }
            out += p
        case .upstreamHost:
            guard let h = info.upstreamHost else { return false }
            h.render(.withPort, into: &out)
        case .upstreamCluster:
            guard let name = info.upstreamCluster else { return false }
            out += name
        case .upstreamRequestAttemptCount:
            out += String(info.upstreamRequestAttemptCount ?? 0)
        case .routeName:
            guard let name = info.routeName, !name.isEmpty else { return false }
            out += name
        case .upstreamLocalAddress(let part):
            guard let a = info.upstreamLocalAddress else { return false }
            a.render(part, into: &out)
        case .upstreamTransportFailureReason:
            guard let r = info.upstreamTransportFailureReason, !r.isEmpty else { return false }
            out += r
        case .connectionID:
            guard let id = info.connectionID else { return false }
            out += String(id)
        case .downstreamPeerURISAN:
            guard let sans = info.downstreamPeerURISAN, !sans.isEmpty else { return false }
            out += sans
        case .downstreamRemoteAddress(let part):
            guard let a = info.downstreamRemoteAddress else { return false }
            a.render(part, into: &out)
        case .downstreamDirectRemoteAddress(let part):
            guard let a = info.downstreamDirectRemoteAddress else { return false }
            a.render(part, into: &out)
        case .downstreamLocalAddress(let part):
            guard let a = info.downstreamLocalAddress else { return false }
            a.render(part, into: &out)
        case .requestedServerName:
            guard let name = info.requestedServerName, !name.isEmpty else { return false }
            out += name
        case .hostname:
            out += info.hostname
        case .streamID:
            guard let id = c.requestHeaders.first(name: "x-request-id") else { return false }
            out += id
        }
        return true
    }

    /// Whole milliseconds, as Envoy's duration commands print them.
    private static func milliseconds(from start: NIODeadline, to end: NIODeadline) -> String {
        String(max(0, (end - start).nanoseconds / 1_000_000))
    }
}

extension HeaderLookup {
    fileprivate func render(_ lookup: (String) -> String?, into out: inout String) -> Bool {
        var value = lookup(name)
        if value == nil, let alternative { value = lookup(alternative) }
        guard let value else { return false }
        if let maxLength, value.utf8.count > maxLength {
            out += String(decoding: value.utf8.prefix(maxLength), as: UTF8.self)
        } else {
            out += value
        }
        return true
    }
}
