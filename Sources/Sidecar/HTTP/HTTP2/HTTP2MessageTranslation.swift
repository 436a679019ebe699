import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// What a downstream HTTP/2 stream's header blocks are as the HTTP/1 messages the connection manager handles, and
/// back: the pure part of `HTTP2StreamCodec`.
///
/// A request block becomes an `HTTPRequestHead` as NIOHTTP2's own translation makes it (the same head, the same
/// errors): `:method`, `:path`, `:scheme` and `:authority` once each and free of controls and spaces, `host` from
/// `:authority` first unless the block has one, and for a method that may carry a body and no `content-length`,
/// `content-length: 0` (ended with its headers) or `transfer-encoding: chunked`. CONNECT is what Envoy's HTTP/2
/// codec makes of it: a CONNECT for the authority, and an extended CONNECT (RFC 8441, `:protocol`) a `GET` upgrade.
///
/// A response head becomes a header block with `:status` first, names in lower case, and without the headers
/// HTTP/2 forbids (`connection` and those it names, `keep-alive`, `proxy-connection`, `transfer-encoding`,
/// `upgrade`). Each field is marked for HPACK's dynamic table as nghttp2 (Envoy's codec) marks it: values that
/// change from one message to the next (`content-length`, `etag`, `last-modified`, `location`, `set-cookie`,
/// `age`, ...) and fields larger than three quarters of the table are not indexed, `authorization` and short
/// cookies never. Besides what it saves on the wire, this keeps the table small: NIOHPACK searches it entry by entry
/// for every field it encodes.
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
    /// the whole request (its stream's DATA belongs to the tunnel).
    static func requestHead(_ block: HPACKHeaders, endStream: Bool) throws -> (head: HTTPRequestHead, connect: Connect?) {
        var method: String?
        var path: String?
        var scheme: String?
        var authority: String?
        var upgrade: String?
        var hasHost = false
        var hasContentLength = false
        for (name, value, _) in block {
            guard name.utf8.first == UInt8(ascii: ":") else {
                if !hasHost && name == "host" { hasHost = true }
                if !hasContentLength && name == "content-length" { hasContentLength = true }
                continue
            }
            switch name {
            case ":method": try take(name, value, into: &method)
            case ":path": try take(name, value, into: &path)
            case ":scheme": try take(name, value, into: &scheme)
            case ":authority": try take(name, value, into: &authority)
            case ":protocol": try take(name, value, into: &upgrade)
            default: break
            }
        }
        guard let method else { throw NIOHTTP2Errors.missingPseudoHeader(":method") }
        var connect: Connect?
        let uri: String
        if method == "CONNECT" {
            guard let authority else { throw NIOHTTP2Errors.missingPseudoHeader(":authority") }
            if upgrade != nil {
                guard let path else { throw NIOHTTP2Errors.missingPseudoHeader(":path") }
                guard scheme != nil else { throw NIOHTTP2Errors.missingPseudoHeader(":scheme") }
                connect = .extended
                uri = path
            } else {
                connect = .plain
                uri = authority
            }
        } else {
            guard let path else { throw NIOHTTP2Errors.missingPseudoHeader(":path") }
            guard scheme != nil else { throw NIOHTTP2Errors.missingPseudoHeader(":scheme") }
            guard authority != nil else { throw NIOHTTP2Errors.missingPseudoHeader(":authority") }
            uri = path
        }
        let httpMethod: HTTPMethod = connect == .extended ? .GET : HTTPMethod(rawValue: method)
        var fields: [(String, String)] = []
        fields.reserveCapacity(block.count + 1)
        if !hasHost, let authority { fields.append(("host", authority)) }
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

    /// The regular fields of a trailer block.
    static func trailers(_ block: HPACKHeaders) -> HTTPHeaders {
        var fields: [(String, String)] = []
        fields.reserveCapacity(block.count)
        for (name, value, _) in block where name.utf8.first != UInt8(ascii: ":") { fields.append((name, value)) }
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
        guard slot == nil else { throw NIOHTTP2Errors.duplicatePseudoHeader(name) }
        // No control, space or DEL: the value becomes part of an HTTP/1 request line or Host.
        guard !value.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) else {
            throw NIOHTTP2Errors.invalidPseudoHeaderValue(name: name, value: value)
        }
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
        // The fields a `connection` header names are this hop's (rare: looked up only when there is one).
        var nominated: [Substring] = []
        for (name, value) in headers where name.utf8.count == 10 && name.lowercased() == "connection" {
            for token in value.split(separator: ",") {
                nominated.append(token.drop(while: { $0 == " " || $0 == "\t" }))
            }
        }
        for (name, value) in headers {
            let lower = Self.lowercased(name)
            if Self.isConnectionSpecific(lower) { continue }
            if !nominated.isEmpty, nominated.contains(where: { $0.lowercased() == lower }) { continue }
            block.add(name: lower, value: value, indexing: Self.indexing(lower, value))
        }
    }

    /// `name` in lower case, the same string when it already is (the common case: no allocation).
    static func lowercased(_ name: String) -> String {
        name.utf8.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) ? name.lowercased() : name
    }

    /// Fields HTTP/2 forbids (RFC 9113 section 8.2.2), by lower-case name.
    static func isConnectionSpecific(_ name: String) -> Bool {
        switch name.utf8.count {
        case 7: return name == "upgrade"
        case 10: return name == "connection" || name == "keep-alive"
        case 16: return name == "proxy-connection"
        case 17: return name == "transfer-encoding"
        default: return false
        }
    }

    /// nghttp2's choice for a field of a header block it sends, by lower-case name.
    static func indexing(_ name: String, _ value: String) -> HPACKIndexing {
        switch name {
        case "authorization": return .neverIndexed
        case "cookie" where value.utf8.count < 20: return .neverIndexed
        case ":path", "age", "content-length", "etag", "if-modified-since", "if-none-match", "location",
             "set-cookie":
            return .nonIndexable
        default:
            // An entry costs its name, value and 32 bytes; one over three quarters of the 4 KiB table would push out
            // most of what is there.
            return name.utf8.count + value.utf8.count + 32 > 3072 ? .nonIndexable : .indexable
        }
    }
}
