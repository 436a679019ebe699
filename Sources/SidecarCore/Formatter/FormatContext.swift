import NIOHTTP1

/// What a substitution format renders from: Envoy's `Formatter::Context` (request headers, response headers,
/// response trailers) and the stream's `StreamInfo`. Parts a use does not have are empty: request header
/// mutations see no response, so `%RESP(...)%` renders as missing there, as in Envoy.
public struct FormatContext: Sendable {
    /// HTTP/1 has no pseudo-headers: `:authority` is read from `host`, and `:method`, `:path` and `:scheme`
    /// come from these.
    public var requestHeaders = HTTPHeaders()
    public var method: String?
    public var path: String?
    public var scheme: String?
    /// `:status`.
    public var responseStatus: Int?
    public var responseHeaders = HTTPHeaders()
    public var responseTrailers = HTTPHeaders()
    public var stream = StreamInfo()

    /// An empty context, built where it is stored (the access log fills its batch entries in place): the
    /// initializer with defaults below builds one and copies it.
    @inlinable
    public init() {}

    @inlinable
    public init(requestHeaders: HTTPHeaders = HTTPHeaders(), method: String? = nil, path: String? = nil,
                scheme: String? = nil, responseStatus: Int? = nil, responseHeaders: HTTPHeaders = HTTPHeaders(),
                responseTrailers: HTTPHeaders = HTTPHeaders(), stream: StreamInfo = StreamInfo()) {
        self.requestHeaders = requestHeaders
        self.method = method
        self.path = path
        self.scheme = scheme
        self.responseStatus = responseStatus
        self.responseHeaders = responseHeaders
        self.responseTrailers = responseTrailers
        self.stream = stream
    }

    package func requestHeader(_ name: String) -> String? {
        guard name.utf8.first == UInt8(ascii: ":") else { return requestHeaders.first(name: name) }
        switch name {
        case ":authority": return requestHeaders.first(name: "host") ?? requestHeaders.first(name: name)
        case ":method": return method ?? requestHeaders.first(name: name)
        case ":path": return path ?? requestHeaders.first(name: name)
        case ":scheme": return scheme ?? requestHeaders.first(name: name)
        default: return requestHeaders.first(name: name)
        }
    }

    package func responseHeader(_ name: String) -> String? {
        if name == ":status", let responseStatus { return String(responseStatus) }
        return responseHeaders.first(name: name)
    }
}
