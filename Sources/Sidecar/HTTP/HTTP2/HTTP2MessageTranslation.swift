import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// What a downstream HTTP/2 stream's header blocks are as the HTTP/1 messages the connection manager handles, and
/// back: the pure part of `HTTP2StreamCodec`.
///
/// A request block is checked against RFC 9113's rules (`HTTP2FieldRules`, in place of NIOHTTP2's validation) and
/// becomes an `HTTPRequestHead` as NIOHTTP2's own translation makes it: `host` from `:authority` first unless the
/// block has one, and for a method that may carry a body and no `content-length`,
/// `content-length: 0` (ended with its headers) or `transfer-encoding: chunked`. CONNECT is what Envoy's HTTP/2
/// codec makes of it: a CONNECT for the authority, and an extended CONNECT (RFC 8441, `:protocol`) a `GET` upgrade.
///
/// A response head becomes a header block with `:status` first, names in lower case, and without the headers
/// HTTP/2 forbids (`connection` and those it names, `keep-alive`, `proxy-connection`, `transfer-encoding`,
/// `upgrade`, and `te`). Each field is marked for HPACK's dynamic table about as nghttp2 (Envoy's codec) marks it
/// (see `indexing`).
enum HTTP2MessageTranslation {
    /// A request whose HEADERS said CONNECT.
    enum Connect: Equatable {
        /// `:method CONNECT` for `:authority` (a tunnel to it).
        case plain
        /// RFC 8441's extended CONNECT: an upgrade to `:protocol`.
        case extended
    }

    /// Thrown for a third header block on a stream (a request and its trailers are all a client sends).
    struct UnexpectedHeaderBlock: Error {}

    /// The request head of a stream's first header block, and what CONNECT it was (nil: none). A CONNECT's head is
    /// the whole request (its stream's DATA belongs to the tunnel). A block that breaks RFC 9113's rules throws
    /// `HTTP2FieldRules.Violation` (the stream's PROTOCOL_ERROR): pseudo-headers first, known, once each, the ones its
    /// method needs and no others (`:protocol` only on a CONNECT, and only when `extendedConnect` was advertised), and
    /// every regular field as `HTTP2FieldRules.checkRegular` wants it. One that keeps the rules but has no
    /// `:authority` throws NIOHTTP2's `missingPseudoHeader`, as its translation did.
    static func requestHead(_ block: HPACKHeaders, endStream: Bool,
                            extendedConnect: Bool) throws -> (head: HTTPRequestHead, connect: Connect?) {
        var method: String?
        var path: String?
        var scheme: String?
        var authority: String?
        var upgrade: String?
        var regularSeen = false
        var hasHost = false
        var hasContentLength = false
        for (name, value, _) in block {
            guard name.utf8.first == UInt8(ascii: ":") else {
                regularSeen = true
                try HTTP2FieldRules.checkRegular(name, value)
                if !hasHost && name == "host" { hasHost = true }
                if !hasContentLength && name == "content-length" { hasContentLength = true }
                continue
            }
            guard !regularSeen else { throw HTTP2FieldRules.Violation(description: "\(name) after a regular field") }
            guard HTTP2FieldRules.isValidPseudoValue(value) else {
                throw HTTP2FieldRules.Violation(description: "invalid value of \(name)")
            }
            switch name {
            case ":method": try take(name, value, into: &method)
            case ":path": try take(name, value, into: &path)
            case ":scheme": try take(name, value, into: &scheme)
            case ":authority": try take(name, value, into: &authority)
            case ":protocol" where extendedConnect: try take(name, value, into: &upgrade)
            default: throw HTTP2FieldRules.Violation(description: "pseudo-header \(name) not allowed")
            }
        }
        guard let method else { throw HTTP2FieldRules.Violation(description: "no :method") }
        let connect: Connect?
        if method == "CONNECT" {
            connect = upgrade == nil ? .plain : .extended
        } else {
            guard upgrade == nil else { throw HTTP2FieldRules.Violation(description: ":protocol on \(method)") }
            connect = nil
        }
        if connect == .plain {
            guard path == nil && scheme == nil else {
                throw HTTP2FieldRules.Violation(description: "CONNECT with :path or :scheme")
            }
            guard authority != nil else { throw HTTP2FieldRules.Violation(description: "CONNECT without :authority") }
        } else {
            guard let path, scheme != nil else { throw HTTP2FieldRules.Violation(description: "no :path or :scheme") }
            guard !path.isEmpty else { throw HTTP2FieldRules.Violation(description: "empty :path") }
        }
        guard let authority else { throw NIOHTTP2Errors.missingPseudoHeader(":authority") }
        let uri = connect == .plain ? authority : path ?? ""
        let httpMethod: HTTPMethod = connect == .extended ? .GET : HTTPMethod(rawValue: method)
        var fields: [(String, String)] = []
        fields.reserveCapacity(block.count + 1)
        if !hasHost { fields.append(("host", authority)) }
        if connect == nil && !hasContentLength && Self.mayHaveBody(httpMethod) {
            fields.append(endStream ? ("content-length", "0") : ("transfer-encoding", "chunked"))
        }
        for (name, value, _) in block where name.utf8.first != UInt8(ascii: ":") { fields.append((name, value)) }
        if connect == .extended, let upgrade {
            fields.append(("upgrade", upgrade))
            fields.append(("connection", "upgrade"))
        }
        return (HTTPRequestHead(version: .http2, method: httpMethod, uri: uri, headers: HTTPHeaders(fields)), connect)
    }

    /// A trailer block's fields, once checked (`HTTP2FieldRules.checkTrailers`).
    static func trailers(_ block: HPACKHeaders) throws -> HTTPHeaders {
        try HTTP2FieldRules.checkTrailers(block)
        var fields: [(String, String)] = []
        fields.reserveCapacity(block.count)
        for (name, value, _) in block { fields.append((name, value)) }
        return HTTPHeaders(fields)
    }

    /// A response head's header block. `acceptedUpgrade`: the answer to an extended CONNECT, whose 101 is HTTP/2's
    /// 200 (RFC 8441).
    static func responseBlock(_ head: HTTPResponseHead, acceptedUpgrade: Bool) -> HPACKHeaders {
        let code = acceptedUpgrade && head.status.code == 101 ? 200 : Int(head.status.code)
        var block = HPACKHeaders()
        block.reserveCapacity(head.headers.count + 1)
        block.add(name: ":status", value: Self.statusText(code), indexing: .indexable)
        appendRegular(head.headers, to: &block)
        return block
    }

    /// A trailer block from HTTP/1 trailers.
    static func trailerBlock(_ trailers: HTTPHeaders) -> HPACKHeaders {
        var block = HPACKHeaders()
        block.reserveCapacity(trailers.count)
        appendRegular(trailers, to: &block)
        return block
    }

    private static func take(_ name: String, _ value: String, into slot: inout String?) throws {
        guard slot == nil else { throw HTTP2FieldRules.Violation(description: "\(name) twice") }
        slot = value
    }

    /// Whether a method's request may carry a body (NIOHTTP2's rule: not GET, HEAD, DELETE, CONNECT or TRACE).
    private static func mayHaveBody(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .DELETE, .CONNECT, .TRACE: return false
        default: return true
        }
    }

    private static func statusText(_ code: Int) -> String {
        switch code {
        case 200: return "200"
        case 204: return "204"
        case 304: return "304"
        case 404: return "404"
        case 503: return "503"
        default: return String(code)
        }
    }

    private static func appendRegular(_ headers: HTTPHeaders, to block: inout HPACKHeaders) {
        var connection: [String] = []
        for (name, value) in headers {
            let lower = Self.lowercased(name)
            if Self.isConnectionSpecific(lower) {
                if lower.utf8.count == 10 && lower == "connection" { connection.append(value) }
                continue
            }
            block.add(name: lower, value: value, indexing: Self.indexing(lower, value))
        }
        // The fields a `connection` header names are this hop's too (rare: looked for only when there is one).
        for value in connection {
            HopByHop.forEachToken(value) { token in
                let name = String(decoding: token, as: UTF8.self).lowercased()
                if name.utf8.first != UInt8(ascii: ":") { block.remove(name: name) }
            }
        }
    }

    /// `name` in lower case, the same string when it already is (the common case: no allocation).
    static func lowercased(_ name: String) -> String {
        var name = name
        let upper = name.withUTF8 { bytes in bytes.contains(where: { $0 &- UInt8(ascii: "A") < 26 }) }
        return upper ? name.lowercased() : name
    }

    /// Fields HTTP/2 forbids (RFC 9113 section 8.2.2), by lower-case name: the hop-by-hop ones (`te` too, which only
    /// a request may carry, as `trailers`) and `transfer-encoding`.
    static func isConnectionSpecific(_ name: String) -> Bool {
        HopByHop.hopByHopIndex(name) != nil || (name.utf8.count == 17 && name == "transfer-encoding")
    }

    /// How a field of a block the proxy sends is marked for HPACK's dynamic table, by lower-case name, as nghttp2
    /// (Envoy's codec) marks it: per-message values stay out of the table (`:path`, `age`, `content-length`, `etag`,
    /// `if-modified-since`, `if-none-match`, `location`, `set-cookie`, and any field over three quarters of the
    /// 4 KiB table), `authorization` and a cookie under 20 bytes are never indexed. Besides the bytes, this keeps
    /// the table short, which NIOHPACK searches entry by entry for every field it encodes. (Keeping `date` and
    /// `x-envoy-upstream-service-time` out as well was measured: their values then had to be Huffman-coded on every
    /// response, 4 % more instructions per stream than searching past them.)
    static func indexing(_ name: String, _ value: String) -> HPACKIndexing {
        let indexable: HPACKIndexing = name.utf8.count + value.utf8.count + 32 > 3072 ? .nonIndexable : .indexable
        switch name.utf8.count {
        case 3: return name == "age" ? .nonIndexable : indexable
        case 4: return name == "etag" ? .nonIndexable : indexable
        case 5: return name == ":path" ? .nonIndexable : indexable
        case 6: return name == "cookie" && value.utf8.count < 20 ? .neverIndexed : indexable
        case 8: return name == "location" ? .nonIndexable : indexable
        case 10: return name == "set-cookie" ? .nonIndexable : indexable
        case 13: return name == "authorization" ? .neverIndexed : (name == "if-none-match" ? .nonIndexable : indexable)
        case 14: return name == "content-length" ? .nonIndexable : indexable
        case 17: return name == "if-modified-since" ? .nonIndexable : indexable
        default: return indexable
        }
    }
}
