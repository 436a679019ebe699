/// `envoy.config.rbac.v3.Permission`: what the downstream is doing (Envoy's `Matcher::create` for a
/// permission). The tree is built once at load; matching walks it without allocating.
package indirect enum RBACPermission: Sendable {
    case any
    case and([RBACPermission])
    case or([RBACPermission])
    case not(RBACPermission)
    /// A request header or pseudo-header; never matches outside HTTP (the network filter refuses it at load).
    case header(HeaderMatcher)
    /// The request path without query and fragment; never matches outside HTTP, as in Envoy.
    case urlPath(StringMatcher)
    /// The downstream local address: the original destination when a listener filter restored it.
    case destinationIP(IPRange)
    case destinationPort(Int)
    /// `[start, end)`.
    case destinationPortRange(Range<Int>)
    /// The SNI a listener filter (tls_inspector) read; "" when there is none.
    case requestedServerName(StringMatcher)

    package func matches(_ request: RBACRequest) -> Bool {
        switch self {
        case .any:
            return true
        case .and(let rules):
            for rule in rules where !rule.matches(request) { return false }
            return true
        case .or(let rules):
            for rule in rules where rule.matches(request) { return true }
            return false
        case .not(let rule):
            return !rule.matches(request)
        case .header(let matcher):
            return request.matchesHeader(matcher)
        case .urlPath(let matcher):
            return request.matchesPath(matcher)
        case .destinationIP(let range):
            return range.contains(request.destination)
        case .destinationPort(let port):
            return request.destinationPort == port
        case .destinationPortRange(let range):
            guard let port = request.destinationPort else { return false }
            return range.contains(port)
        case .requestedServerName(let matcher):
            return matcher.matches(request.requestedServerName)
        }
    }
}
