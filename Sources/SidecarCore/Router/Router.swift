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
    /// `nil` in the proxy: `runtime_fraction` reads the route table's runtime (its default value when the
    /// runtime has no value for the key). Non-nil: a runtime mock, as in Envoy's router_check_tool: a
    /// `runtime_fraction` route can only match when its `runtime_key` equals this value (`""` switches none on),
    /// and then its default fraction decides.
    public var enabledRuntimeKey: String?
    /// The stream's dynamic metadata, for `dynamic_metadata` route matchers. The proxy has no filter that
    /// sets any, so there it is empty.
    public var dynamicMetadata: Metadata

    public init(method: String, path: String, authority: String, scheme: String = "http", isInternal: Bool = false,
                headers: HTTPHeaders = HTTPHeaders(), randomValue: UInt64 = 0, enabledRuntimeKey: String? = nil,
                dynamicMetadata: Metadata = Metadata()) {
        self.method = method
        self.path = path
        self.authority = authority
        self.scheme = scheme
        self.isInternal = isInternal
        self.headers = headers
        self.randomValue = randomValue
        self.enabledRuntimeKey = enabledRuntimeKey
        self.dynamicMetadata = dynamicMetadata
    }

    /// A header as matchers see it: pseudo-headers from the request line, repeated headers joined with ",".
    /// Like Envoy, which keeps the HTTP/1 Host header only as `:authority`, there is no `host` header.
    package func header(_ name: String) -> String? {
        switch name {
        case ":path": return path
        case ":method": return method
        case ":authority": return authority
        case "host": return nil
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

    /// The first value of a header, where Envoy reads only one (`cluster_header`, content-type).
    package func firstHeader(_ name: String) -> String? {
        switch name {
        case ":path", ":method", ":authority", "host", ":scheme": return header(name)
        default: return headers.first(name: name)
        }
    }

    /// The path that path matchers see: Envoy's `PathUtil::removeQueryAndFragment`.
    package var pathWithoutQuery: Substring {
        if let q = path.utf8.firstIndex(where: { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }) {
            return path[..<q]
        }
        return Substring(path)
    }

    package var query: Substring {
        guard let q = path.utf8.firstIndex(of: UInt8(ascii: "?")) else { return "" }
        return path[q...]
    }
}

/// What the route table decided for a request.
public enum RouteDecision {
    case noRoute
    case forward(ForwardTarget)
    /// `routeName`: the route's `name` (`%ROUTE_NAME%`); nil for the virtual host's `require_tls` redirect.
    case directResponse(DirectResponse, mutations: [HeaderMutations], virtualHost: String, routeName: String?)
    case redirect(location: String, status: Int, mutations: [HeaderMutations], virtualHost: String, routeName: String?)

    /// The name of the route that decided, when it has one.
    public var routeName: String? {
        switch self {
        case .noRoute: return nil
        case .forward(let target): return target.routeName
        case .directResponse(_, _, _, let name), .redirect(_, _, _, _, let name): return name
        }
    }
}

/// A forwarding decision: the cluster and the request as it must leave.
/// A class: a request's forwarding decision is read from the stream, the router and the upstream request, and
/// copying a struct this size cost a few dozen retains each time. Built once by the router, never changed after.
public final class ForwardTarget: Sendable {
    public let cluster: String
    /// `cluster` in the config snapshot whose table made this target, when the table resolved it (not for
    /// `cluster_header`, nor for a name the snapshot lacks).
    package let clusterSlot: ClusterSlot?
    /// The path after the route's `prefix_rewrite` / `regex_rewrite`; nil: the request's own path.
    public let rewrittenPath: String?
    public let hostRewrite: String?
    public let autoHostRewrite: Bool
    public let timeout: ProtoDuration
    public let routeName: String?
    public let virtualHost: String
    /// Most specific first: weighted cluster, route, virtual host, route configuration.
    public let mutations: [HeaderMutations]
    /// The route's `retry_policy`, else the virtual host's (Envoy does not merge the two); nil: no retries.
    public let retryPolicy: RetryPolicyConfig?
    /// The route's `hash_policy`, for RING_HASH and MAGLEV clusters.
    public let hashPolicies: [HashPolicy]
    /// The route's `priority`: which circuit-breaker thresholds the request counts against.
    public let priority: CircuitBreakerThresholds.Priority
    /// The route's `idle_timeout`, overriding the connection manager's `stream_idle_timeout`; zero disables.
    public let idleTimeout: ProtoDuration?
    /// The virtual host's `include_request_attempt_count` (`x-envoy-attempt-count` upstream) and
    /// `include_attempt_count_in_response` (the same header downstream).
    public let includeRequestAttemptCount: Bool
    public let includeAttemptCountInResponse: Bool
    /// The route's `per_request_buffer_limit_bytes`, else the virtual host's: how much request body may be
    /// kept for retries. Nil: the listener's connection buffer limit.
    public let perRequestBufferLimitBytes: Int?
    /// The deprecated `cors` policies of the route action and virtual host, for the CORS filter.
    package let routeCORS: CORSPolicy?
    package let virtualHostCORS: CORSPolicy?
    /// The route's and the virtual host's `rate_limits`.
    public let rateLimits: [RateLimitPolicy]
    public let virtualHostRateLimits: [RateLimitPolicy]
    /// The route's `request_mirror_policies`.
    public let mirrorPolicies: [MirrorPolicy]
    /// The route's `decorator` (its spans' operation name).
    public let decorator: RouteDecorator?
    /// The route's `upgrade_configs` (lower-cased upgrade type → enabled).
    public let upgradeConfigs: [String: Bool]
    /// See `ForwardAction.terminatesConnect`.
    public let terminatesConnect: Bool
    /// See `ForwardAction.maxGRPCTimeout`.
    public let maxGRPCTimeout: ProtoDuration?
    public let grpcTimeoutOffset: ProtoDuration?

    package init(cluster: String, clusterSlot: ClusterSlot? = nil, rewrittenPath: String?,
         hostRewrite: String?, autoHostRewrite: Bool, timeout: ProtoDuration,
         routeName: String?, virtualHost: String, mutations: [HeaderMutations], retryPolicy: RetryPolicyConfig? = nil,
         hashPolicies: [HashPolicy] = [], priority: CircuitBreakerThresholds.Priority = .DEFAULT,
         idleTimeout: ProtoDuration? = nil, includeRequestAttemptCount: Bool = false,
         includeAttemptCountInResponse: Bool = false, perRequestBufferLimitBytes: Int? = nil,
         routeCORS: CORSPolicy? = nil, virtualHostCORS: CORSPolicy? = nil, rateLimits: [RateLimitPolicy] = [],
         virtualHostRateLimits: [RateLimitPolicy] = [], mirrorPolicies: [MirrorPolicy] = [],
         decorator: RouteDecorator? = nil, upgradeConfigs: [String: Bool] = [:],
         maxGRPCTimeout: ProtoDuration? = nil, grpcTimeoutOffset: ProtoDuration? = nil, terminatesConnect: Bool = false) {
        self.cluster = cluster
        self.clusterSlot = clusterSlot
        self.rewrittenPath = rewrittenPath
        self.hostRewrite = hostRewrite
        self.autoHostRewrite = autoHostRewrite
        self.timeout = timeout
        self.routeName = routeName
        self.virtualHost = virtualHost
        self.mutations = mutations
        self.retryPolicy = retryPolicy
        self.hashPolicies = hashPolicies
        self.priority = priority
        self.idleTimeout = idleTimeout
        self.includeRequestAttemptCount = includeRequestAttemptCount
        self.includeAttemptCountInResponse = includeAttemptCountInResponse
        self.perRequestBufferLimitBytes = perRequestBufferLimitBytes
        self.routeCORS = routeCORS
        self.virtualHostCORS = virtualHostCORS
        self.rateLimits = rateLimits
        self.virtualHostRateLimits = virtualHostRateLimits
        self.mirrorPolicies = mirrorPolicies
        self.decorator = decorator
        self.upgradeConfigs = upgradeConfigs
        self.maxGRPCTimeout = maxGRPCTimeout
        self.grpcTimeoutOffset = grpcTimeoutOffset
        self.terminatesConnect = terminatesConnect
    }

    /// The route timeout of this request: the route's, or for a gRPC request on a route that reads `grpc-timeout`,
    /// that (see `GRPCTimeout.routeTimeout`).
    public func timeout(grpc: Bool, grpcTimeoutHeader: @autoclosure () -> String?) -> ProtoDuration {
        guard grpc, let max = maxGRPCTimeout else { return timeout }
        return GRPCTimeout.routeTimeout(header: grpcTimeoutHeader(), max: max, offset: grpcTimeoutOffset)
    }

    /// The path the request leaves with, given the one it came with.
    @inlinable @inline(__always)
    public func path(for requestPath: String) -> String { rewrittenPath ?? requestPath }
}

extension RouteConfiguration {
    /// Where a request lands in the table, before any action is taken: Envoy's `RouteMatcher::route`.
    package enum Selection {
        case noVirtualHost
        /// The virtual host's `require_tls` sends the request to https before any route is tried.
        case tlsRedirect(virtualHost: Int)
        case noRoute(virtualHost: Int)
        case route(virtualHost: Int, route: Int)
    }

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

    /// `request` must be as `requestAsRouted` returns it.
    package func select(_ request: RouteRequest) -> Selection {
        guard let vhIndex = virtualHostIndex(for: request.authority) else { return .noVirtualHost }
        // Read in place: binding the virtual host to a local copied the whole struct per request.
        let requireTLS = virtualHosts[vhIndex].requireTLS
        if requireTLS == .ALL || (requireTLS == .EXTERNAL_ONLY && !request.isInternal), request.scheme != "https" {
            return .tlsRedirect(virtualHost: vhIndex)
        }
        // By index: `firstIndex(where:)` copied every route it looked at (a struct of a dozen references).
        let count = virtualHosts[vhIndex].routes.count
        var routeIndex = 0
        while routeIndex < count {
            if virtualHosts[vhIndex].routes[routeIndex].match.matches(request, runtime: runtime) {
                return .route(virtualHost: vhIndex, route: routeIndex)
            }
            routeIndex += 1
        }
        return .noRoute(virtualHost: vhIndex)
    }

    public func route(_ request: RouteRequest) -> RouteDecision {
        resolve(request).decision
    }

    /// The route decision and the `typed_per_filter_config` that applies to the request: the chosen route's,
    /// its virtual host's and the route configuration's (only those that were matched).
    public func resolve(_ original: RouteRequest) -> (decision: RouteDecision, perFilter: PerFilterConfigs) {
        // Most requests carry no internal-only header: route the request itself rather than a copy.
        if needsInternalOnlyHeadersRemoved(original) { return resolveRouted(requestAsRouted(original)) }
        return resolveRouted(original)
    }

    /// `resolve` for a request as `requestAsRouted` returns it.
    private func resolveRouted(_ request: RouteRequest) -> (decision: RouteDecision, perFilter: PerFilterConfigs) {
        var perFilter = PerFilterConfigs()
        perFilter.routeConfiguration = typedPerFilterConfig
        let vhIndex: Int
        let routeIndex: Int
        switch select(request) {
        case .noVirtualHost:
            return (.noRoute, perFilter)
        case .noRoute(let i):
            perFilter.virtualHost = virtualHosts[i].typedPerFilterConfig
            return (.noRoute, perFilter)
        case .tlsRedirect(let i):
            perFilter.virtualHost = virtualHosts[i].typedPerFilterConfig
            let location = "https://" + request.authority + request.path
            return (.redirect(location: location, status: 301, mutations: [], virtualHost: virtualHosts[i].name,
                              routeName: nil), perFilter)
        case .route(let v, let r):
            vhIndex = v
            routeIndex = r
        }
        perFilter.virtualHost = virtualHosts[vhIndex].typedPerFilterConfig
        perFilter.route = virtualHosts[vhIndex].routes[routeIndex].typedPerFilterConfig
        // The fixed target was built for an external request (internal-only headers removed upstream).
        if let fixed = virtualHosts[vhIndex].routes[routeIndex].fixedTarget,
           !request.isInternal || internalOnlyHeaders.isEmpty {
            return (.forward(fixed), perFilter)
        }
        return (decide(request, vh: virtualHosts[vhIndex], route: virtualHosts[vhIndex].routes[routeIndex]), perFilter)
    }

    private func decide(_ request: RouteRequest, vh: VirtualHost, route: Route) -> RouteDecision {
        switch route.action {
        case .directResponse(let d):
            return .directResponse(d, mutations: [route.headers, vh.headers, headers], virtualHost: vh.name,
                                   routeName: route.name)
        case .redirect(let r):
            let location = r.location(for: request, match: route.match)
            return .redirect(location: location, status: r.status, mutations: [route.headers, vh.headers, headers],
                             virtualHost: vh.name, routeName: route.name)
        case .forward(let f):
            let cluster: String
            var slot: ClusterSlot?
            var weightedHeaders: HeaderMutations?
            switch f.cluster {
            case .named(let c):
                cluster = c
                slot = f.clusterSlot
            case .fromHeader(let h):
                // Envoy uses the first value only. A missing header still selects the route, with no cluster:
                // the router then answers as for an unknown cluster (cluster_not_found_response_code, 503).
                cluster = request.firstHeader(h) ?? ""
            case .weighted(let clusters, let total):
                let chosen = clusters[ForwardAction.weightedIndex(clusters, total: total, random: request.randomValue)]
                cluster = chosen.name
                slot = chosen.slot
                weightedHeaders = chosen.headers
            }
            let rewritten = f.prefixRewrite == nil && f.regexRewrite == nil
                ? nil : f.rewrittenPath(request, match: route.match)
            return .forward(target(f, cluster: cluster, slot: slot, rewrittenPath: rewritten,
                                   weightedHeaders: weightedHeaders, external: !request.isInternal, vh: vh, route: route))
        }
    }

    /// A route's forwarding decision for one cluster choice. `external`: the request is not internal, so the
    /// table's `internal_only_headers` are removed before anything is added (the connection manager strips them
    /// before the router runs).
    package func target(_ f: ForwardAction, cluster: String, slot: ClusterSlot?, rewrittenPath: String?,
                weightedHeaders: HeaderMutations?, external: Bool, vh: VirtualHost, route: Route) -> ForwardTarget {
        var mutations = [route.headers, vh.headers, headers]
        if let weightedHeaders { mutations.insert(weightedHeaders, at: 0) }
        if external && !internalOnlyHeaders.isEmpty {
            mutations.insert(HeaderMutations(requestRemove: internalOnlyHeaders), at: 0)
        }
        return ForwardTarget(
            cluster: cluster, clusterSlot: slot, rewrittenPath: rewrittenPath,
            hostRewrite: f.hostRewriteLiteral, autoHostRewrite: f.autoHostRewrite, timeout: f.timeout,
            routeName: route.name, virtualHost: vh.name, mutations: mutations,
            retryPolicy: f.retryPolicy ?? vh.retryPolicy, hashPolicies: f.hashPolicies, priority: f.priority,
            idleTimeout: f.idleTimeout, includeRequestAttemptCount: vh.includeRequestAttemptCount,
            includeAttemptCountInResponse: vh.includeAttemptCountInResponse,
            perRequestBufferLimitBytes: route.perRequestBufferLimitBytes ?? vh.perRequestBufferLimitBytes,
            routeCORS: f.cors, virtualHostCORS: vh.cors, rateLimits: f.rateLimits,
            virtualHostRateLimits: vh.rateLimits, mirrorPolicies: f.mirrorPolicies, decorator: route.decorator,
            upgradeConfigs: f.upgradeConfigs, maxGRPCTimeout: f.maxGRPCTimeout, grpcTimeoutOffset: f.grpcTimeoutOffset,
            terminatesConnect: f.terminatesConnect)
    }
}

extension RouteMatch {
    package func matches(_ request: RouteRequest, runtime: Runtime? = nil) -> Bool {
        guard pathMatches(request) else { return false }
        if let rf = runtimeFraction {
            if let enabled = request.enabledRuntimeKey {
                guard !enabled.isEmpty, (rf.runtimeKey ?? "") == enabled else { return false }
            }
            let defaultValue = FractionalPercent(numerator: rf.numerator, denominator: rf.denominator)
            if request.enabledRuntimeKey == nil, let runtime {
                // Envoy's `evaluateRuntimeMatch`: snapshot().featureEnabled(runtime_key, default_value, random).
                guard runtime.snapshot.featureEnabled(rf.runtimeKey, default: defaultValue, random: request.randomValue)
                else { return false }
            } else {
                // Envoy's ProtobufPercentHelper::evaluateFractionalPercent.
                guard request.randomValue % rf.denominator < rf.numerator else { return false }
            }
        }
        if grpc && !Self.isGRPC(request) { return false }
        for m in dynamicMetadata where !m.matches(request.dynamicMetadata) { return false }
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

    /// Envoy's `Grpc::Common::isGrpcRequestHeaders`: content-type `application/grpc`, or `application/grpc+…`
    /// (so `application/grpc-web` is not gRPC).
    package static func isGRPC(_ request: RouteRequest) -> Bool {
        guard let contentType = request.firstHeader("content-type") else { return false }
        let grpc = "application/grpc".utf8
        let ct = contentType.utf8
        guard ct.starts(with: grpc) else { return false }
        let rest = ct.dropFirst(grpc.count)
        return rest.isEmpty || rest.first == UInt8(ascii: "+")
    }

    private func pathMatches(_ request: RouteRequest) -> Bool {
        // A CONNECT request matches connect_matcher routes only, and they match nothing else (Envoy).
        if case .connect = path { return request.method == "CONNECT" }
        if request.method == "CONNECT" { return false }
        // Every path rule sees the path without query and fragment (Envoy's PathMatcher).
        let actual = request.pathWithoutQuery
        switch path {
        case .connect:
            return false
        case .prefix(let p):
            if caseSensitive { return actual.utf8.starts(with: p.utf8) }
            return actual.lowercased().hasPrefix(p.lowercased())
        case .path(let p):
            if caseSensitive { return actual.utf8.elementsEqual(p.utf8) }
            return actual.lowercased() == p.lowercased()
        case .regex(let r):
            return r.fullMatch(String(actual))
        case .separatedPrefix(let p):
            let head = actual.utf8.prefix(p.utf8.count)
            let same = caseSensitive ? head.elementsEqual(p.utf8) : String(Substring(head)).lowercased() == p.lowercased()
            guard same else { return false }
            let rest = actual.utf8.dropFirst(p.utf8.count)
            return rest.isEmpty || rest.first == UInt8(ascii: "/")
        }
    }

    /// How many leading bytes of `:path` a `prefix_rewrite` replaces: the configured prefix or path, or the
    /// whole path (without query) for a regex route, as Envoy's `matcher()` gives it.
    package func matchedPrefixLength(_ request: RouteRequest) -> Int {
        switch path {
        case .prefix(let p), .separatedPrefix(let p), .path(let p): return p.utf8.count
        case .regex: return request.pathWithoutQuery.utf8.count
        case .connect: return 0
        }
    }

    /// Envoy's `rewritePathByPrefixOrRegex`: the rewritten `:path`, or nil when nothing is rewritten
    /// (no rewrite configured, or a regex rewrite that yields an empty path).
    package func rewritePath(_ request: RouteRequest, prefix: String?, regex: (CompiledRegex, String)?) -> String? {
        if let prefix {
            let n = matchedPrefixLength(request)
            return prefix + String(Substring(request.path.utf8.dropFirst(n)))
        }
        if let (pattern, substitution) = regex {
            let pathOnly = request.pathWithoutQuery
            let replaced = pattern.replaceAll(in: String(pathOnly), with: substitution)
            if replaced.isEmpty { return nil }
            return replaced + request.path[pathOnly.endIndex...]
        }
        return nil
    }
}

extension ForwardAction {
    /// Envoy's weighted cluster choice: `random % total`, then the first cluster whose running weight
    /// exceeds it.
    package static func weightedIndex(_ clusters: [WeightedCluster], total: UInt64, random: UInt64) -> Int {
        let x = random % total
        var running: UInt64 = 0
        for (i, c) in clusters.enumerated() {
            running += c.weight
            if running > x { return i }
        }
        return clusters.count - 1
    }

    package func rewrittenPath(_ request: RouteRequest, match: RouteMatch) -> String {
        match.rewritePath(request, prefix: prefixRewrite, regex: regexRewrite) ?? request.path
    }
}

extension Redirect {
    /// Envoy's `Http::Utility::newUri`: scheme, host (with its port stripped when the scheme changes away from
    /// that scheme's default port, or a new port is set), and the path after the redirect's rewrite, with the
    /// query kept unless stripped.
    package func location(for request: RouteRequest, match: RouteMatch) -> String {
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
        var finalPath: String
        var keepsOwnQuery = false
        switch path {
        case .none:
            finalPath = request.path
        case .path(let p):
            if p.contains("?") {
                // The path_redirect's own query wins and is never stripped.
                finalPath = p
                keepsOwnQuery = true
            } else if let q = request.path.firstIndex(of: "?") {
                finalPath = p + request.path[q...]
            } else {
                finalPath = p
            }
        case .prefix(let p):
            finalPath = match.rewritePath(request, prefix: p, regex: nil) ?? request.path
        case .regex(let pattern, let sub):
            finalPath = match.rewritePath(request, prefix: nil, regex: (pattern, sub)) ?? request.path
        }
        if !finalPath.hasPrefix("/") { finalPath = "/" + finalPath }
        if stripQuery && !keepsOwnQuery, let q = finalPath.firstIndex(of: "?") {
            finalPath = String(finalPath[..<q])
        }
        return finalScheme + "://" + finalHost + newPort + finalPath
    }
}

package enum QueryString {
    package static func parse(_ query: Substring) -> [(name: String, value: String)] {
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
