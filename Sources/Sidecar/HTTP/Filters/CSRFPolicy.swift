import NIOHTTP1
import SidecarCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
import SidecarCore
#endif

/// `envoy.extensions.filters.http.csrf.v3.CsrfPolicy`: the filter's config and its per-route override.
struct CSRFPolicy: Sendable {
    /// `filter_enabled.default_value` (required, as in Envoy).
    var filterEnabled: RuntimeFractionalPercent
    /// `shadow_enabled.default_value`; unset: off.
    var shadowEnabled: RuntimeFractionalPercent?
    var additionalOrigins: [StringMatcher] = []

    static func decode(_ obj: ConfigObject) throws -> CSRFPolicy {
        guard let enabled = obj.optional("filter_enabled") else {
            throw obj.value.error("missing required field 'filter_enabled' (Envoy: CsrfPolicyValidationError."
                + "FilterEnabled: value is required)")
        }
        let policy = CSRFPolicy(
            filterEnabled: try FractionalPercent.decodeRuntime(enabled),
            shadowEnabled: try obj.optional("shadow_enabled").map(FractionalPercent.decodeRuntime),
            additionalOrigins: try obj.list("additional_origins").map(StringMatcher.decode))
        try obj.finish()
        return policy
    }

    /// Envoy's `isModifyMethod`: only these methods are checked.
    static func isModifyMethod(_ method: String) -> Bool {
        method == "POST" || method == "PUT" || method == "DELETE" || method == "PATCH"
    }

    /// Envoy's `sourceOriginValue`: the host (and port, as written) of `Origin`, else of `Referer`. `Origin: null`
    /// (an opaque origin) counts as no origin at all, and then `Referer` is not looked at. A value that is not an
    /// absolute URL is used as it is. Empty: no source origin.
    static func sourceOrigin(origin: String?, referer: String?) -> String {
        if let origin, !origin.isEmpty {
            return origin == "null" ? "" : EnvoyURL.hostAndPort(origin) ?? origin
        }
        guard let referer, !referer.isEmpty else { return "" }
        return EnvoyURL.hostAndPort(referer) ?? referer
    }

    /// Envoy's `targetOriginValue`: the host (and port, as written) of `<scheme>://<host>`.
    static func targetOrigin(host: String, scheme: String) -> String {
        if host.isEmpty { return "" }
        let url = scheme + "://" + host
        return EnvoyURL.hostAndPort(url) ?? url
    }

    enum Outcome: Equatable {
        /// Not a mutating method (or the policy is off): nothing counted.
        case notChecked
        case valid
        case missingSourceOrigin
        case invalid
    }

    /// The check of a mutating request: the source origin must equal the destination, or match an
    /// `additional_origins` entry. A request without a source origin is not compared at all.
    func check(method: String, origin: String?, referer: String?, host: String, scheme: String) -> Outcome {
        guard Self.isModifyMethod(method) else { return .notChecked }
        let source = Self.sourceOrigin(origin: origin, referer: referer)
        if source.isEmpty { return .missingSourceOrigin }
        if source == Self.targetOrigin(host: host, scheme: scheme) { return .valid }
        return additionalOrigins.contains { $0.matches(source) } ? .valid : .invalid
    }
}

/// Envoy's `Http::Utility::Url::initialize` (non-CONNECT), which runs http_parser's `http_parser_parse_url`:
/// only what the CSRF filter reads from it, the authority (`host[:port]`, userinfo dropped, IPv6 in brackets).
enum EnvoyURL {
    /// The host and port of an absolute URL exactly as written (no case folding, no default port), or nil when
    /// http_parser would reject it or it has neither scheme nor host.
    static func hostAndPort(_ url: String) -> String? {
        let b = Array(url.utf8)
        if b.isEmpty { return nil }
        enum State { case start, schema, schemaSlash, schemaSlashSlash, serverStart, server, serverWithAt, path,
                     queryStart, query, fragmentStart, fragment }
        var s = State.start
        var hostStart = -1, hostEnd = -1
        var foundAt = false
        for (i, c) in b.enumerated() {
            if c == 0x20 || c == 0x0D || c == 0x0A { return nil }
            var next: State?
            switch s {
            case .start:
                if c == UInt8(ascii: "/") || c == UInt8(ascii: "*") { next = .path } else if isAlpha(c) { next = .schema }
            case .schema:
                if isAlpha(c) { next = .schema } else if c == UInt8(ascii: ":") { next = .schemaSlash }
            case .schemaSlash:
                if c == UInt8(ascii: "/") { next = .schemaSlashSlash }
            case .schemaSlashSlash:
                if c == UInt8(ascii: "/") { next = .serverStart }
            case .serverStart, .server, .serverWithAt:
                if s == .serverWithAt && c == UInt8(ascii: "@") { return nil }
                if c == UInt8(ascii: "/") {
                    next = .path
                } else if c == UInt8(ascii: "?") {
                    next = .queryStart
                } else if c == UInt8(ascii: "@") {
                    next = .serverWithAt
                } else if isUserinfoChar(c) || c == UInt8(ascii: "[") || c == UInt8(ascii: "]") {
                    next = .server
                }
            case .path:
                if isURLChar(c) { next = .path } else if c == UInt8(ascii: "?") { next = .queryStart } else if c == UInt8(ascii: "#") { next = .fragmentStart }
            case .queryStart, .query:
                if isURLChar(c) || c == UInt8(ascii: "?") { next = .query } else if c == UInt8(ascii: "#") { next = .fragmentStart }
            case .fragmentStart:
                if isURLChar(c) || c == UInt8(ascii: "?") { next = .fragment } else if c == UInt8(ascii: "#") { next = .fragmentStart }
            case .fragment:
                if isURLChar(c) || c == UInt8(ascii: "?") || c == UInt8(ascii: "#") { next = .fragment }
            }
            guard let n = next else { return nil }
            if n == .serverWithAt { foundAt = true }
            if n == .server || n == .serverWithAt {
                if hostStart < 0 || (s != .server && s != .serverWithAt) { hostStart = i }
                hostEnd = i + 1
            }
            s = n
        }
        // http_parser: a schema needs a host ("http:///x" fails); Envoy: neither host nor schema fails too.
        guard hostStart >= 0 else { return nil }
        return parseHost(b, hostStart, hostEnd, foundAt: foundAt)
    }

    /// http_parser's `http_parse_host`, then Envoy's IPv6 bracket adjustment and check.
    private static func parseHost(_ b: [UInt8], _ start: Int, _ end: Int, foundAt: Bool) -> String? {
        enum H { case userinfoStart, userinfo, hostStart, host, v6Start, v6, v6End, v6ZoneStart, v6Zone, portStart, port }
        var s: H = foundAt ? .userinfoStart : .hostStart
        var hostOff = -1, hostLen = 0, portLen = 0
        var i = start
        while i < end {
            let c = b[i]
            var n: H?
            switch s {
            case .userinfoStart, .userinfo:
                if c == UInt8(ascii: "@") { n = .hostStart } else if isUserinfoChar(c) { n = .userinfo }
            case .hostStart:
                if c == UInt8(ascii: "[") { n = .v6Start } else if isHostChar(c) { n = .host }
            case .host, .v6End:
                if s == .host && isHostChar(c) { n = .host } else if c == UInt8(ascii: ":") { n = .portStart }
            case .v6, .v6Start:
                if s == .v6 && c == UInt8(ascii: "]") {
                    n = .v6End
                } else if isHex(c) || c == UInt8(ascii: ":") || c == UInt8(ascii: ".") {
                    n = .v6
                } else if s == .v6 && c == UInt8(ascii: "%") {
                    n = .v6ZoneStart
                }
            case .v6Zone, .v6ZoneStart:
                if s == .v6Zone && c == UInt8(ascii: "]") {
                    n = .v6End
                } else if isAlphaNum(c) || c == UInt8(ascii: "%") || c == UInt8(ascii: ".") || c == UInt8(ascii: "-")
                    || c == UInt8(ascii: "_") || c == UInt8(ascii: "~") {
                    n = .v6Zone
                }
            case .portStart, .port:
                if isNum(c) { n = .port }
            }
            guard let next = n else { return nil }
            switch next {
            case .host, .v6:
                if next != s { hostOff = i }
                hostLen += 1
            case .v6ZoneStart, .v6Zone:
                hostLen += 1
            case .port:
                portLen += 1
            default:
                break
            }
            s = next
            i += 1
        }
        switch s {
        case .hostStart, .v6Start, .v6, .v6ZoneStart, .v6Zone, .portStart, .userinfo, .userinfoStart: return nil
        default: break
        }
        guard hostOff >= 0 else { return nil }
        if portLen > 0 {
            // Ports above 65535 fail.
            var v = 0
            for d in b[(end - portLen)..<end] {
                v = v * 10 + Int(d - UInt8(ascii: "0"))
                if v > 0xffff { return nil }
            }
        }
        var from = hostOff
        var length = hostLen + (portLen > 0 ? portLen + 1 : 0)
        // Envoy's maybeAdjustForIpv6: the brackets belong to the authority, and what is inside must be an IP.
        if from > 0 && b[from - 1] == UInt8(ascii: "[") {
            from -= 1
            length += 2
            let inside = String(decoding: b[(from + 1)..<(from + 1 + hostLen)], as: UTF8.self)
            var addr = in6_addr()
            guard inet_pton(AF_INET6, inside, &addr) == 1 else { return nil }
        }
        return String(decoding: b[from..<(from + length)], as: UTF8.self)
    }

    private static func isAlpha(_ c: UInt8) -> Bool { (c | 0x20) >= UInt8(ascii: "a") && (c | 0x20) <= UInt8(ascii: "z") }
    private static func isNum(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
    private static func isAlphaNum(_ c: UInt8) -> Bool { isAlpha(c) || isNum(c) }
    private static func isHex(_ c: UInt8) -> Bool {
        isNum(c) || ((c | 0x20) >= UInt8(ascii: "a") && (c | 0x20) <= UInt8(ascii: "f"))
    }
    private static func isMark(_ c: UInt8) -> Bool { "-_.!~*'()".utf8.contains(c) }
    private static func isUserinfoChar(_ c: UInt8) -> Bool { isAlphaNum(c) || isMark(c) || "%;:&=+$,".utf8.contains(c) }
    /// http_parser without HTTP_PARSER_STRICT: letters, digits, `.`, `-` and `_`.
    private static func isHostChar(_ c: UInt8) -> Bool {
        isAlphaNum(c) || c == UInt8(ascii: ".") || c == UInt8(ascii: "-") || c == UInt8(ascii: "_")
    }
    /// http_parser's `normal_url_char` (non-strict: tab and form feed too) and every byte above 0x7F.
    private static func isURLChar(_ c: UInt8) -> Bool {
        if c >= 0x80 { return true }
        if c == 0x09 || c == 0x0C { return true }
        return c > 0x20 && c < 0x7F && c != UInt8(ascii: "#") && c != UInt8(ascii: "?")
    }
}
