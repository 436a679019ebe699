import NIOCore
import NIOHTTP1
import SidecarCore

/// `envoy.filters.http.rbac`: allows or denies each request by the connection's and the request's properties.
/// A denial is Envoy's local reply: 403, `RBAC: access denied`. Per route, `RBACPerRoute` replaces the rules
/// (an `rbac` of its own) or, without one, turns the filter off for that route.
final class RBACHTTPFilter: HTTPStreamFilter, HTTPFilterFactory, @unchecked Sendable {
    // Immutable after init; shared by every stream of the listener.
    static let registration = HTTPFilterRegistration(
        typeURL: RBACFilterConfig.httpType, name: "envoy.filters.http.rbac",
        decode: { try RBACFilterConfig.decodeHTTP($0) },
        perRoute: [(perRouteType, { @Sendable (o: ConfigObject) throws -> any Sendable in try RBACPerRoute.decode(o) })],
        fields: [.init("envoy.extensions.filters.http.rbac.v3.RBACPerRoute", type: perRouteType, "rbac")])

    static let perRouteType = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute"
    static let accessDeniedBody = "RBAC: access denied"

    let name: String
    let filter: RBACFilter
    let registry: StatsRegistry
    let statPrefix: String

    init(name: String, filter: RBACFilter, registry: StatsRegistry, statPrefix: String) {
        self.name = name
        self.filter = filter
        self.registry = registry
        self.statPrefix = statPrefix
    }

    func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter { self }

    func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        var rules = filter
        if let perRoute = stream.perRouteConfig(name, as: RBACPerRoute.self) {
            // Envoy keeps the filter's counters and takes the route's rules.
            guard let override = perRoute.rbac else { return .continue }
            rules = RBACFilter(override, stats: filter.stats, registry: registry)
        } else if stream.filterDisabled(name) {
            return .continue
        }
        let info = stream.downstream
        var request = RBACRequest(
            source: info.remoteAddress, destination: info.localAddress, security: info.security,
            requestedServerName: info.requestedServerName, http: stream.request)
        if rules.usesRemoteIP, let forwarded = stream.codec.forwardedClientAddress(stream.request.headers) {
            request.useForwardedFor(forwarded)
        }
        if rules.allows(request, counting: stream.stats) { return .continue }
        stream.sendLocalReply(status: .forbidden, body: Self.accessDeniedBody)
        return .stopIteration
    }
}

/// `envoy.extensions.filters.http.rbac.v3.RBACPerRoute` as decoded: an RBAC config of its own, or none (the
/// filter is off for the route).
struct RBACPerRoute: Sendable, StartupRegistering {
    var rbac: RBACFilterConfig?

    static func decode(_ obj: ConfigObject) throws -> RBACPerRoute {
        var out = RBACPerRoute()
        if let r = obj.optional("rbac") { out.rbac = try RBACFilterConfig.decodeHTTP(try r.object()) }
        try obj.finish()
        return out
    }
    /// The route's own `Ip` matchers count under their stat prefixes; they are registered before any request.
    func registerStats(_ registry: StatsRegistry) {
        rbac?.registerStats(registry)
    }
}

extension RBACFilterConfig: HTTPFilterConfig {
    func makeFactory(_ context: HTTPFilterBuildContext) -> any HTTPFilterFactory {
        let stats = RBACStats(statsScope(connectionManagerPrefix: context.statPrefix), registry: context.registry)
        registerStats(context.registry)
        return RBACHTTPFilter(name: context.filterName, filter: RBACFilter(self, stats: stats, registry: context.registry),
                              registry: context.registry, statPrefix: context.statPrefix)
    }
}
