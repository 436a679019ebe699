import NIOHTTP1

/// `request_headers_to_add/remove` and `response_headers_to_add/remove` at one level of the route table.
public struct HeaderMutations: Sendable {
    public enum AppendAction: String, Sendable, CaseIterable {
        case APPEND_IF_EXISTS_OR_ADD, ADD_IF_ABSENT, OVERWRITE_IF_EXISTS_OR_ADD, OVERWRITE_IF_EXISTS
    }

    public struct Addition: Sendable {
        public var name: String
        public var value: HeaderValueFormat
        public var action: AppendAction
        public var keepEmpty: Bool
    }

    public var requestAdd: [Addition] = []
    public var requestRemove: [String] = []
    public var responseAdd: [Addition] = []
    public var responseRemove: [String] = []

    public var isEmpty: Bool {
        requestAdd.isEmpty && requestRemove.isEmpty && responseAdd.isEmpty && responseRemove.isEmpty
    }

    public static let none = HeaderMutations()

    func applyRequest(to headers: inout HTTPHeaders, context: FormatContext) {
        Self.apply(remove: requestRemove, add: requestAdd, to: &headers, context: context)
    }

    func applyResponse(to headers: inout HTTPHeaders, context: FormatContext) {
        Self.apply(remove: responseRemove, add: responseAdd, to: &headers, context: context)
    }

    /// Envoy's `HeaderParser::evaluateHeaders`: removals first; then every addition is decided against the
    /// headers as they were before this level added anything; overwrites are applied before appends.
    private static func apply(remove: [String], add: [Addition], to headers: inout HTTPHeaders, context: FormatContext) {
        for name in remove { headers.remove(name: name) }
        guard !add.isEmpty else { return }
        var appends: [(String, String)] = []
        var overwrites: [(String, String)] = []
        for a in add {
            let value = a.value.render(context)
            if value.isEmpty && !a.keepEmpty { continue }
            switch a.action {
            case .APPEND_IF_EXISTS_OR_ADD:
                appends.append((a.name, value))
            case .ADD_IF_ABSENT:
                if !headers.contains(name: a.name) { appends.append((a.name, value)) }
            case .OVERWRITE_IF_EXISTS_OR_ADD:
                overwrites.append((a.name, value))
            case .OVERWRITE_IF_EXISTS:
                if headers.contains(name: a.name) { overwrites.append((a.name, value)) }
            }
        }
        for (name, value) in overwrites { headers.replaceOrAdd(name: name, value: value) }
        for (name, value) in appends { headers.add(name: name, value: value) }
    }
}

/// What a header value template can refer to.
public struct FormatContext: Sendable {
    public var downstreamRemote: String
    public var downstreamRemoteWithoutPort: String
    public var downstreamLocal: String
    public var downstreamLocalWithoutPort: String
    public var proto: String
    public var hostname: String
}

/// A header value with Envoy's `%COMMAND%` substitutions, parsed once at load.
public struct HeaderValueFormat: Sendable {
    enum Piece: Sendable {
        case text(String)
        case downstreamRemote, downstreamRemoteWithoutPort, downstreamLocal, downstreamLocalWithoutPort, proto, hostname
    }

    let pieces: [Piece]
    let literal: String?

    static let commands: [String: Piece] = [
        "DOWNSTREAM_REMOTE_ADDRESS": .downstreamRemote,
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": .downstreamRemoteWithoutPort,
        "DOWNSTREAM_LOCAL_ADDRESS": .downstreamLocal,
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": .downstreamLocalWithoutPort,
        "PROTOCOL": .proto,
        "HOSTNAME": .hostname,
    ]

    init(parsing text: String, at value: ConfigValue) throws {
        var pieces: [Piece] = []
        var current = ""
        var chars = Substring(text)
        while let c = chars.first {
            chars = chars.dropFirst()
            guard c == "%" else { current.append(c); continue }
            if chars.first == "%" { current.append("%"); chars = chars.dropFirst(); continue }
            guard let end = chars.firstIndex(of: "%") else {
                throw value.error("unterminated '%' in header value '\(text)'; write '%%' for a literal percent sign")
            }
            let name = String(chars[..<end])
            chars = chars[chars.index(after: end)...]
            guard let piece = Self.commands[name] else {
                throw value.error("header value command '%\(name)%' is not supported by Pilotfish yet")
            }
            if !current.isEmpty { pieces.append(.text(current)); current = "" }
            pieces.append(piece)
        }
        if !current.isEmpty { pieces.append(.text(current)) }
        self.pieces = pieces
        if pieces.isEmpty {
            literal = ""
        } else if pieces.count == 1, case .text(let t) = pieces[0] {
            literal = t
        } else {
            literal = nil
        }
    }

    func render(_ c: FormatContext) -> String {
        if let literal { return literal }
        var out = ""
        for p in pieces {
            switch p {
            case .text(let t): out += t
            case .downstreamRemote: out += c.downstreamRemote
            case .downstreamRemoteWithoutPort: out += c.downstreamRemoteWithoutPort
            case .downstreamLocal: out += c.downstreamLocal
            case .downstreamLocalWithoutPort: out += c.downstreamLocalWithoutPort
            case .proto: out += c.proto
            case .hostname: out += c.hostname
            }
        }
        return out
    }
}

extension HeaderMutations {
    static func decode(_ obj: ConfigObject) throws -> HeaderMutations {
        var m = HeaderMutations()
        m.requestAdd = try obj.list("request_headers_to_add").map(decodeAddition)
        m.requestRemove = try obj.list("request_headers_to_remove").map { try checkRemovable($0) }
        m.responseAdd = try obj.list("response_headers_to_add").map(decodeAddition)
        m.responseRemove = try obj.list("response_headers_to_remove").map { try checkRemovable($0) }
        return m
    }

    /// A list of `HeaderValueOption`s (filters' `*_headers_to_add`).
    static func decodeAdditions(_ value: ConfigValue?) throws -> [Addition] {
        try value?.array().map(decodeAddition) ?? []
    }

    private static func checkRemovable(_ v: ConfigValue) throws -> String {
        let name = try v.nonEmptyString().lowercased()
        if name.hasPrefix(":") || name == "host" {
            throw v.error("'\(name)' cannot be removed")
        }
        return name
    }

    private static func decodeAddition(_ value: ConfigValue) throws -> Addition {
        let obj = try value.object()
        let hv = try obj.required("header").object()
        let key = try hv.required("key").nonEmptyString()
        if key.hasPrefix(":") || key.lowercased() == "host" {
            throw hv.value.error("header '\(key)' cannot be modified with headers_to_add")
        }
        let rawValue = hv.optional("value")
        try hv.unsupported(["raw_value"])
        let text = try rawValue?.string() ?? ""
        let format = try HeaderValueFormat(parsing: text, at: rawValue ?? hv.value)
        try hv.finish()
        var action = AppendAction.APPEND_IF_EXISTS_OR_ADD
        let appendValue = obj.optional("append")
        let actionValue = obj.optional("append_action")
        if let appendValue, actionValue != nil {
            throw appendValue.error("'append' and 'append_action' cannot both be set")
        }
        if let appendValue, try !appendValue.bool() { action = .OVERWRITE_IF_EXISTS_OR_ADD }
        if let actionValue { action = try actionValue.enumValue(AppendAction.self) }
        let keepEmpty = try obj.optional("keep_empty_value")?.bool() ?? false
        try obj.finish()
        return Addition(name: key.lowercased(), value: format, action: action, keepEmpty: keepEmpty)
    }
}
