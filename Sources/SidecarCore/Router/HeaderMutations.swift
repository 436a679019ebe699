import NIOHTTP1

/// `request_headers_to_add/remove` and `response_headers_to_add/remove` at one level of the route table.
public struct HeaderMutations: Sendable {
    public enum AppendAction: String, Sendable, CaseIterable {
        case APPEND_IF_EXISTS_OR_ADD, ADD_IF_ABSENT, OVERWRITE_IF_EXISTS_OR_ADD, OVERWRITE_IF_EXISTS
    }

    public struct Addition: Sendable {
        public var name: String
        public var value: SubstitutionFormat
        public var action: AppendAction
        public var keepEmpty: Bool
    }

    public var requestAdd: [Addition] = []
    public var requestRemove: [String] = []
    public var responseAdd: [Addition] = []
    public var responseRemove: [String] = []

    package init(
        requestAdd: [Addition] = [], requestRemove: [String] = [], responseAdd: [Addition] = [],
        responseRemove: [String] = []
    ) {
        self.requestAdd = requestAdd
        self.requestRemove = requestRemove
        self.responseAdd = responseAdd
        self.responseRemove = responseRemove
    }

    public var isEmpty: Bool {
        requestAdd.isEmpty && requestRemove.isEmpty && responseAdd.isEmpty && responseRemove.isEmpty
    }

    public static let none = HeaderMutations()

    /// `context` is built only when an addition of this level renders a command (literal values need none); the
    /// request headers it carries are the ones being mutated, after this level's removals.
    package func applyRequest(to headers: inout HTTPHeaders, context: @autoclosure () -> FormatContext) {
        Self.apply(remove: requestRemove, add: requestAdd, to: &headers) { current in
            var c = context()
            c.requestHeaders = current
            return c
        }
    }

    /// As `applyRequest`; `context` carries the request, and the response headers are the ones being mutated.
    package func applyResponse(to headers: inout HTTPHeaders, context: @autoclosure () -> FormatContext) {
        Self.apply(remove: responseRemove, add: responseAdd, to: &headers) { current in
            var c = context()
            c.responseHeaders = current
            return c
        }
    }

    /// Envoy's `HeaderParser::evaluateHeaders`: removals first; then every addition is decided against the
    /// headers as they were before this level added anything; overwrites are applied before appends. A value
    /// that renders empty is not added unless `keep_empty_value` (observed on Envoy 1.40: `%REQ(x)%` of a request
    /// without `x` adds nothing).
    private static func apply(remove: [String], add: [Addition], to headers: inout HTTPHeaders,
                              context: (HTTPHeaders) -> FormatContext) {
        for name in remove { headers.remove(name: name) }
        guard !add.isEmpty else { return }
        var appends: [(String, String)] = []
        var overwrites: [(String, String)] = []
        var formatContext: FormatContext?
        for a in add {
            let value: String
            if let literal = a.value.literal {
                value = literal
            } else {
                if formatContext == nil { formatContext = context(headers) }
                let rendered = a.value.format(formatContext!)
                // Commands render data from the stream, the TLS handshake or the config (route and cluster names,
                // the SNI, %START_TIME(%n)%): a value that would break the header is dropped, never written (the
                // outbound pipelines do not re-validate).
                guard ConfigValue.firstControlCharacter(in: rendered) == nil else { continue }
                value = rendered
            }
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
        // The context shares the headers' storage: let go of it so the changes below do not copy them.
        formatContext = nil
        for (name, value) in overwrites { headers.replaceOrAdd(name: name, value: value) }
        for (name, value) in appends { headers.add(name: name, value: value) }
    }

    /// Some request (response) addition renders a command, so the stream's data must be at hand.
    package var requestReadsStream: Bool { requestAdd.contains { $0.value.literal == nil } }
    package var responseReadsStream: Bool { responseAdd.contains { $0.value.literal == nil } }

    /// Some addition reads the clock (`%START_TIME%`, durations): the stream must note when it started.
    package var readsStreamTiming: Bool {
        (requestAdd + responseAdd).contains { a in
            a.value.commands.contains { c in
                switch c {
                case .startTime, .duration, .requestDuration, .responseDuration: return true
                default: return false
                }
            }
        }
    }
}

extension HeaderMutations {
    package static func decode(_ obj: ConfigObject) throws -> HeaderMutations {
        var m = HeaderMutations()
        m.requestAdd = try obj.list("request_headers_to_add").map(decodeAddition)
        m.requestRemove = try obj.list("request_headers_to_remove").map { try checkRemovable($0) }
        m.responseAdd = try obj.list("response_headers_to_add").map(decodeAddition)
        m.responseRemove = try obj.list("response_headers_to_remove").map { try checkRemovable($0) }
        return m
    }

    /// A list of `HeaderValueOption`s (filters' `*_headers_to_add`).
    package static func decodeAdditions(_ value: ConfigValue?) throws -> [Addition] {
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
        let keyValue = try hv.required("key")
        let key = try keyValue.nonEmptyString()
        if key.hasPrefix(":") || key.lowercased() == "host" {
            throw hv.value.error("header '\(key)' cannot be modified with headers_to_add")
        }
        _ = try keyValue.headerNameText()
        let rawValue = hv.optional("value")
        try hv.unsupported(["raw_value"])
        let text = try rawValue?.headerValueText() ?? ""
        let format = try SubstitutionFormat(parsing: text, at: rawValue ?? hv.value)
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
