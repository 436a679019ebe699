/// `envoy.config.rbac.v3.Principal`: who the downstream is (Envoy's `Matcher::create` for a principal).
package indirect enum RBACPrincipal: Sendable {
    case any
    case and([RBACPrincipal])
    case or([RBACPrincipal])
    case not(RBACPrincipal)
    /// Envoy's `AuthenticatedMatcher`; nil matches any TLS connection. See `matchesAuthenticated`.
    case authenticated(StringMatcher?)
    /// `source_ip` (deprecated in Envoy but still honoured): the connection's peer.
    case sourceIP(IPRange)
    /// The connection's peer, whatever `x-forwarded-for` says.
    case directRemoteIP(IPRange)
    /// The downstream remote address: for HTTP the last `x-forwarded-for` address when there is a valid
    /// one (Envoy's default with `use_remote_address: false` and no trusted hops), else the peer.
    case remoteIP(IPRange)
    case header(HeaderMatcher)
    case urlPath(StringMatcher)

    package func matches(_ request: RBACRequest) -> Bool {
        switch self {
        case .any:
            return true
        case .and(let ids):
            for id in ids where !id.matches(request) { return false }
            return true
        case .or(let ids):
            for id in ids where id.matches(request) { return true }
            return false
        case .not(let id):
            return !id.matches(request)
        case .authenticated(let matcher):
            return Self.matchesAuthenticated(matcher, request.security)
        case .sourceIP(let range), .directRemoteIP(let range):
            return range.contains(request.source)
        case .remoteIP(let range):
            return range.contains(request.remote)
        case .header(let matcher):
            return request.matchesHeader(matcher)
        case .urlPath(let matcher):
            return request.matchesPath(matcher)
        }
    }

    /// Envoy's `AuthenticatedMatcher::matches` (source/extensions/filters/common/rbac/matchers.cc), checked on
    /// Envoy 1.40: a plaintext connection never matches; any TLS connection matches a principal without
    /// `principal_name`, with or without a client certificate; otherwise every URI SAN is tried, then every
    /// DNS SAN, then the subject (RFC 2253, "CN=a,O=b") — the subject even when SANs exist. Without a client
    /// certificate the subject is "", so `exact: ""` matches a TLS connection that presented none.
    package static func matchesAuthenticated(_ matcher: StringMatcher?, _ security: ConnectionSecurity?) -> Bool {
        guard let security else { return false }
        guard let matcher else { return true }
        for uri in security.peerURISANs where matcher.matches(uri) { return true }
        for dns in security.peerDNSSANs where matcher.matches(dns) { return true }
        return matcher.matches(security.peerSubject)
    }

    /// True when some identifier in the tree reads the XFF-derived remote address, so that the HTTP filter
    /// parses `x-forwarded-for` only for rules that need it.
    package var usesRemoteIP: Bool {
        switch self {
        case .remoteIP: return true
        case .and(let ids), .or(let ids): return ids.contains { $0.usesRemoteIP }
        case .not(let id): return id.usesRemoteIP
        case .any, .authenticated, .sourceIP, .directRemoteIP, .header, .urlPath: return false
        }
    }
}
