import NIOHTTP1

/// The parts of a request that routing looks at.
public struct RouteRequest {
    public var method: String
    /// `:path`, query string included.
    public var path: String
    public var authority: String
    /// `x-forwarded-proto` as the router sees it: "http" or "https".
    public var scheme: String
    public var isInternal: Bool
    public var headers: HTTPHeaders
    /// Picks weighted clusters and decides runtime fractions.
    public var randomValue: UInt64
    /// The runtime key that is switched on, if any (used by the conformance replay's runtime mock).
    public var enabledRuntimeKey: String?

    public init(method: String, path: String, authority: String, scheme: String = "http", isInternal: Bool = false,
                headers: HTTPHeaders = HTTPHeaders(), randomValue: UInt64 = 0, enabledRuntimeKey: String? = nil) {
        self.method = method
        self.path = path
        self.authority = authority
        self.scheme = scheme
        self.isInternal = isInternal
        self.headers = headers
        self.randomValue = randomValue
        self.enabledRuntimeKey = enabledRuntimeKey
    }

    /// A header as matchers see it: pseudo-headers from the request line, repeated headers joined with ",".
    func header(_ name: String) -> String? {
        switch name {
        case ":path": return path
        case ":method": return method
        case ":authority", "host": return authority
        case ":scheme": return scheme
        default:
            var it = headers[name].makeIterator()
            guard let first = it.next() else { return nil }
            guard let second = it.next() else { return first }
            var joined = first + "," + second
            while let more = it.next() { joined += "," + more }
            return joined
        }
    }

    var pathWithoutQuery: Substring {
        if let q = path.utf8.firstIndex(where: { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }) {
            return path[..<q]
        }
        return Substring(path)
    }

    var query: Substring {
        guard let q = path.utf8.firstIndex(of: UInt8(ascii: "?")) else { return "" }
        return path[q...]
    }
}

/// What the route table decided for a request.
public enum RouteDecision {
    case noRoute
    case forward(ForwardTarget)
    case directResponse(DirectResponse, mutations: [HeaderMutations], virtualHost: String)
    case redirect(location: String, status: Int, mutations: [HeaderMutations], virtualHost: String)
}

/// A forwarding decision: the cluster and the request as it must leave.
public struct ForwardTarget {
    public var cluster: String
    public var path: String
    public var hostRewrite: String?
    public var autoHostRewrite: Bool
    public var timeout: ProtoDuration
    public var routeName: String?
    public var virtualHost: String
    /// Most specific first: weighted cluster, route, virtual host, route configuration.
    public var mutations: [HeaderMutations]
}

extension RouteConfiguration {
    /// Envoy's virtual host selection on the lower-cased host; the port is part of the host.
    public func virtualHostIndex(for authority: String) -> Int? {
        let host = authority.utf8.contains(where: { $0 >= 65 && $0 <= 90 }) ? authority.lowercased() : authority
        if let i = exactDomains[host] { return i }
        let count = host.utf8.count
        for s in suffixDomains where count > s.suffix.utf8.count && host.utf8.reversed().starts(with: s.suffix.utf8.reversed()) {
            return s.index
        }
        for p in prefixDomains where count > p.prefix.utf8.count && host.utf8.starts(with: p.prefix.utf8) {
            return p.index
        }
        return defaultHost
    }

    public func route(_ request: RouteRequest) -> RouteDecision {
        guard let vhIndex = virtualHostIndex(for: request.authority) else { return .noRoute }
        let vh = virtualHosts[vhIndex]
        if vh.requireTLS == .ALL || (vh.requireTLS == .EXTERNAL_ONLY && !request.isInternal), request.scheme != "https" {
            let location = "https://" + request.authority + request.path
            return .redirect(location: location, status: 301, mutations: [], virtualHost: vh.name)
        }
        guard let route = vh.routes.first(where: { $0.match.matches(request) }) else { return .noRoute }
        switch route.action {
        case .directResponse(let d):
            return .directResponse(d, mutations: [route.headers, vh.headers, headers], virtualHost: vh.name)
        case .redirect(let r):
            let location = r.location(for: request, match: route.match)
            return .redirect(location: location, status: r.status, mutations: [route.headers, vh.headers, headers],
                             virtualHost: vh.name)
        case .forward(let f):
            var mutations = [route.headers, vh.headers, headers]
            let cluster: String
            switch f.cluster {
            case .named(let c):
                cluster = c
            case .fromHeader(let h):
                guard let c = request.header(h), !c.isEmpty else { return .noRoute }
                cluster = c
            case .weighted(let clusters, let total):
                let x = request.randomValue % total
                var running: UInt64 = 0
                var chosen = clusters[clusters.count - 1]
                for c in clusters {
                    running += c.weight
                    if running > x { chosen = c; break }
                }
                cluster = chosen.name
                mutations.insert(chosen.headers, at: 0)
            }
            return .forward(ForwardTarget(
                cluster: cluster, path: f.rewrittenPath(request, match: route.match),
                hostRewrite: f.hostRewriteLiteral, autoHostRewrite: f.autoHostRewrite, timeout: f.timeout,
                routeName: route.name, virtualHost: vh.name, mutations: mutations))
        }
    }
}

extension RouteMatch {
    func matches(_ request: RouteRequest) -> Bool {
        guard pathMatches(request) else { return false }
        if let rf = runtimeFraction {
            if let key = rf.runtimeKey, let enabled = request.enabledRuntimeKey {
                if key != enabled { return false }
            }
            if request.randomValue % rf.denominator >= rf.numerator && !(rf.numerator == 0 && request.enabledRuntimeKey == rf.runtimeKey && rf.runtimeKey != nil) {
                return false
            }
        }
        for h in headers where !h.matches(request.header) { return false }
        if !queryParameters.isEmpty {
            let params = QueryString.parse(request.query)
            for q in queryParameters {
                guard let v = params.first(where: { $0.name == q.name })?.value else { return false }
                if let m = q.matcher, !m.matches(v) { return false }
            }
        }
        return true
    }

    private func pathMatches(_ request: RouteRequest) -> Bool {
        switch path {
        case .prefix(let p):
            // Envoy matches a prefix against the whole :path, query included.
            if caseSensitive { return request.path.utf8.starts(with: p.utf8) }
            return request.path.lowercased().hasPrefix(p.lowercased())
        case .path(let p):
            let actual = request.pathWithoutQuery
            if caseSensitive { return actual.utf8.elementsEqual(p.utf8) }
            return actual.lowercased() == p.lowercased()
        case .regex(let r):
            return r.fullMatch(String(request.pathWithoutQuery))
        case .separatedPrefix(let p):
            let actual = request.pathWithoutQuery
            let head = actual.utf8.prefix(p.utf8.count)
            let same = caseSensitive ? head.elementsEqual(p.utf8) : String(Substring(head)).lowercased() == p.lowercased()
            guard same else { return false }
            let rest = actual.utf8.dropFirst(p.utf8.count)
            return rest.isEmpty || rest.first == UInt8(ascii: "/")
        }
    }

    /// The part of the path that `prefix_rewrite` replaces.
    func matchedPrefixLength(_ request: RouteRequest) -> Int {
        switch path {
        case .prefix(let p), .separatedPrefix(let p): return p.utf8.count
        case .path, .regex: return request.pathWithoutQuery.utf8.count
        }
    }
}

extension ForwardAction {
    func rewrittenPath(_ request: RouteRequest, match: RouteMatch) -> String {
        if let prefixRewrite {
            let n = match.matchedPrefixLength(request)
            return prefixRewrite + String(Substring(request.path.utf8.dropFirst(n)))
        }
        if let (pattern, sub) = regexRewrite {
            return pattern.replaceAll(in: String(request.pathWithoutQuery), with: sub) + request.query
        }
        return request.path
    }
}

extension Redirect {
    /// Envoy's redirect URL: scheme, host (with its port stripped when the scheme changes away from
    /// that scheme's default port), and path with the query kept unless stripped.
    func location(for request: RouteRequest, match: RouteMatch) -> String {
        let finalScheme = scheme ?? request.scheme
        let newPort = port.map { ":\($0)" } ?? ""
        var finalHost: String
        if let host {
            finalHost = host
        } else {
            finalHost = request.authority
            let hostEnd: String.Index?
            if finalHost.hasPrefix("[") {
                hostEnd = finalHost.range(of: "]:", options: .backwards).map { finalHost.index(after: $0.lowerBound) }
            } else {
                hostEnd = finalHost.lastIndex(of: ":")
            }
            if let hostEnd {
                let requestPort = finalHost[hostEnd...]
                var remove = !newPort.isEmpty
                if finalScheme != request.scheme {
                    remove = remove || (request.scheme == "https" && requestPort == ":443")
                    remove = remove || (request.scheme == "http" && requestPort == ":80")
                }
                if remove { finalHost = String(finalHost[..<hostEnd]) }
            }
        }
        finalHost += newPort
        var finalPath: String
        switch path {
        case .none:
            finalPath = request.path
            if stripQuery { finalPath = String(request.pathWithoutQuery) }
        case .path(let p):
            if p.contains("?") {
                finalPath = p
            } else {
                finalPath = p + (stripQuery ? "" : String(request.query))
            }
        case .prefix(let p):
            let n = match.matchedPrefixLength(request)
            finalPath = p + String(Substring(request.path.utf8.dropFirst(n)))
            if stripQuery, let q = finalPath.firstIndex(of: "?") { finalPath = String(finalPath[..<q]) }
        case .regex(let pattern, let sub):
            finalPath = pattern.replaceAll(in: String(request.pathWithoutQuery), with: sub)
            if !stripQuery { finalPath += request.query }
        }
        return finalScheme + "://" + finalHost + finalPath
    }
}

enum QueryString {
    static func parse(_ query: Substring) -> [(name: String, value: String)] {
        var q = query
        if q.first == "?" { q = q.dropFirst() }
        if let hash = q.firstIndex(of: "#") { q = q[..<hash] }
        return q.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            if let eq = pair.firstIndex(of: "=") {
                return (String(pair[..<eq]), String(pair[pair.index(after: eq)...]))
            }
            return (String(pair), "")
        }
    }
}
