/// Envoy's `SubstitutionFormatParser`: text up to a `%`; `%%` is a literal percent sign; otherwise a command must
/// follow, matching `%COMMAND(ARGUMENT):LENGTH%` where COMMAND is `[A-Z0-9_]+`, the argument (up to the first `)`
/// that lets the rest match) and the length are optional, and the command decides which of them it takes.
extension SubstitutionFormat {
    package static func parse(_ text: String, options: Options) throws(FormatSyntaxError) -> [Piece] {
        let bytes = Array(text.utf8)
        var pieces: [Piece] = []
        var literal: [UInt8] = []
        var pos = 0
        while pos < bytes.count {
            guard bytes[pos] == UInt8(ascii: "%") else {
                literal.append(bytes[pos])
                pos += 1
                continue
            }
            if pos + 1 < bytes.count, bytes[pos + 1] == UInt8(ascii: "%") {
                literal.append(UInt8(ascii: "%"))
                pos += 2
                continue
            }
            if !literal.isEmpty {
                pieces.append(.text(String(decoding: literal, as: UTF8.self)))
                literal.removeAll()
            }
            guard let token = Self.token(bytes, at: pos) else {
                throw FormatSyntaxError("no valid command at position \(pos) (a literal '%' is written '%%')")
            }
            pieces.append(.command(try Self.command(token, options: options)))
            pos = token.end
        }
        if !literal.isEmpty { pieces.append(.text(String(decoding: literal, as: UTF8.self))) }
        return pieces
    }

    package struct Token {
        package var name: String
        package var argument: String?
        package var length: Int?
        /// Just past the closing `%`.
        package var end: Int
    }

    /// Envoy's `^%((?:[A-Z]|[0-9]|_)+)(?:\((.*?)\))?(?::([0-9]+))?%` at `start` (which holds the `%`).
    package static func token(_ b: [UInt8], at start: Int) -> Token? {
        var i = start + 1
        while i < b.count, Self.isCommandByte(b[i]) { i += 1 }
        guard i > start + 1 else { return nil }
        let name = String(decoding: b[(start + 1)..<i], as: UTF8.self)
        if i < b.count, b[i] == UInt8(ascii: "(") {
            // The argument is lazy: the first `)` after which `:digits%` or `%` follows. `.` does not match a
            // newline in RE2, so neither does the argument.
            var close = i + 1
            while close < b.count, b[close] != UInt8(ascii: "\n") {
                if b[close] == UInt8(ascii: ")"), let tail = Self.tail(b, at: close + 1) {
                    let argument = String(decoding: b[(i + 1)..<close], as: UTF8.self)
                    return Token(name: name, argument: argument, length: tail.length, end: tail.end)
                }
                close += 1
            }
            return nil
        }
        guard let tail = Self.tail(b, at: i) else { return nil }
        return Token(name: name, argument: nil, length: tail.length, end: tail.end)
    }

    /// `:digits%` or `%` at `i`: the length and the index past the `%`.
    private static func tail(_ b: [UInt8], at i: Int) -> (length: Int?, end: Int)? {
        guard i < b.count else { return nil }
        if b[i] == UInt8(ascii: "%") { return (nil, i + 1) }
        guard b[i] == UInt8(ascii: ":") else { return nil }
        var j = i + 1
        var value = 0
        while j < b.count, b[j] >= UInt8(ascii: "0"), b[j] <= UInt8(ascii: "9") {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int(b[j] - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            value = s
            j += 1
        }
        guard j > i + 1, j < b.count, b[j] == UInt8(ascii: "%") else { return nil }
        return (value, j + 1)
    }

    private static func isCommandByte(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
            || c == UInt8(ascii: "_")
    }

    /// The command a token names, with Envoy's syntax checks (`CommandSyntaxChecker`) and messages.
    package static func command(_ t: Token, options: Options) throws(FormatSyntaxError) -> FormatCommand {
        let argument = t.argument ?? ""
        switch t.name {
        case "REQ", "RESP", "TRAILER":
            let lookup = try headerLookup(t)
            switch t.name {
            case "REQ": return .requestHeader(lookup)
            case "RESP": return .responseHeader(lookup)
            default: return .responseTrailer(lookup)
            }
        case "REQ_WITHOUT_QUERY":
            guard options.contains(.requestWithoutQuery) else {
                throw FormatSyntaxError(
                    "%REQ_WITHOUT_QUERY% is not supported here: Envoy has it only as the formatter extension "
                        + "envoy.formatter.req_without_query of an access log (Envoy: Not supported field in "
                        + "StreamInfo: REQ_WITHOUT_QUERY)")
            }
            return .requestHeaderWithoutQuery(try headerLookup(t))
        case "START_TIME":
            if t.length != nil { throw FormatSyntaxError("START_TIME does not allow length to be specified.") }
            return .startTime(argument.isEmpty ? .default : try StartTimeFormat(parsing: argument))
        default:
            if let command = FormatCommand.plain[t.name] {
                if !argument.isEmpty || t.length != nil {
                    throw FormatSyntaxError("\(t.name) does not take any parameters or length")
                }
                return command
            }
            if FormatCommand.envoyOnly.contains(t.name) {
                throw FormatSyntaxError("format command '%\(t.name)%' is not supported by Pilotfish yet")
            }
            throw FormatSyntaxError("unknown format command '%\(t.name)%' (Envoy: Not supported field in StreamInfo)")
        }
    }

    /// `X?Y` of `%REQ(X?Y):Z%`: at most one alternative; names lower-cased, as Envoy looks them up.
    private static func headerLookup(_ t: Token) throws(FormatSyntaxError) -> HeaderLookup {
        guard let argument = t.argument, !argument.isEmpty else {
            throw FormatSyntaxError("\(t.name) requires parameters")
        }
        let names = argument.split(separator: "?", omittingEmptySubsequences: false)
        guard names.count <= 2 else {
            throw FormatSyntaxError("More than 1 alternative header specified in token: \(argument)")
        }
        for name in names where !isHeaderName(name) {
            throw FormatSyntaxError("invalid header name '\(name)' in \(t.name)(\(argument))")
        }
        let alternative = names.count == 2 && !names[1].isEmpty ? names[1].lowercased() : nil
        return HeaderLookup(name: names[0].lowercased(), alternative: alternative, maxLength: t.length)
    }

    /// An RFC 9110 token, or a pseudo-header (`:path`). Envoy refuses other characters in header names.
    private static func isHeaderName(_ name: Substring) -> Bool {
        var utf8 = name.utf8[...]
        if utf8.first == UInt8(ascii: ":") { utf8 = utf8.dropFirst() }
        return !utf8.isEmpty && utf8.allSatisfy { c in
            switch c {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"):
                return true
            default:
                return "!#$%&'*+-.^_`|~".utf8.contains(c)
            }
        }
    }
}
