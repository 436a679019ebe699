/// One `typed_per_filter_config` entry: the filter's per-route config as its registry entry decoded it, or
/// `envoy.config.route.v3.FilterConfig` with `disabled: true`.
public struct PerRouteFilterConfig: Sendable {
    /// The decoded per-route message (nil when the entry only disables the filter).
    public var config: (any Sendable)?
    public var disabled: Bool
    /// The per-route message's `@type`.
    public var typeURL: String
}

/// The `typed_per_filter_config` maps that apply to a request, most specific first: route, virtual host,
/// route configuration. Dictionaries are shared (copy-on-write), so carrying them per request copies nothing.
public struct PerFilterConfigs: Sendable {
    public var route: [String: PerRouteFilterConfig] = [:]
    public var virtualHost: [String: PerRouteFilterConfig] = [:]
    public var routeConfiguration: [String: PerRouteFilterConfig] = [:]

    public init() {}

    package var isEmpty: Bool { route.isEmpty && virtualHost.isEmpty && routeConfiguration.isEmpty }

    /// Envoy's `mostSpecificPerFilterConfig`.
    package func lookup(_ filterName: String) -> PerRouteFilterConfig? {
        if isEmpty { return nil }
        return route[filterName] ?? virtualHost[filterName] ?? routeConfiguration[filterName]
    }
}
