/// How one HTTP filter extension is found in a config: by the `@type` of its `typed_config`, as Envoy finds it.
struct HTTPFilterRegistration: Sendable {
    let typeURL: String
    /// The extension's canonical name (`envoy.filters.http.fault`).
    let name: String
    let decode: @Sendable (ConfigObject) throws -> any HTTPFilterConfig
    /// The `@type`s a route's `typed_per_filter_config` may give this filter, and how to decode each.
    var perRoute: [(typeURL: String, decode: @Sendable (ConfigObject) throws -> any Sendable)] = []
    /// The fields of the messages this filter's decoders read (see `ConfigFields`): a typo in its config is then
    /// named before anything else is said about the mapping.
    var fields: [ConfigFields.Message] = []
}

/// A decoded `http_filters` entry.
public struct HTTPFilterEntry: Sendable {
    public var name: String
    public var typeURL: String
    let config: any HTTPFilterConfig
}

/// Every HTTP filter Pilotfish has. Adding a filter: one file under `HTTP/Filters/` that defines its
/// `registration`, and one line here.
enum HTTPFilterRegistry {
    static let filters: [HTTPFilterRegistration] = [
        RBACHTTPFilter.registration,
        FaultFilter.registration,
        LocalRateLimitFilter.registration,
        HealthCheckFilter.registration,
        CORSFilter.registration,
        CSRFFilter.registration,
        CompressorFilter.registration,
        DecompressorFilter.registration,
        RouterFilter.registration,
    ]

    static let routeFilterConfigType = "type.googleapis.com/envoy.config.route.v3.FilterConfig"

    static func registration(forType typeURL: String) -> HTTPFilterRegistration? {
        filters.first { $0.typeURL == typeURL }
    }

    /// The connection manager's `http_filters`: every entry names its extension by `typed_config.@type`; the router
    /// must be last. Unlike Envoy 1.40 we accept the router without `typed_config`, as the seed's examples write
    /// it: the intent is unambiguous.
    static func decodeChain(_ value: ConfigValue) throws -> [HTTPFilterEntry] {
        let items = try value.array()
        var entries: [HTTPFilterEntry] = []
        for (i, item) in items.enumerated() {
            let f = try item.object()
            let name = try f.required("name").nonEmptyString()
            try f.unsupported(["config_discovery", "is_optional", "disabled"])
            let entry: HTTPFilterEntry
            if let typed = f.optional("typed_config") {
                let t = try typed.object()
                let typeValue = try t.required("@type")
                let type = try typeValue.string()
                guard let reg = registration(forType: type) else {
                    throw typeValue.error("HTTP filter '\(name)' (\(type)) is not supported by Pilotfish yet; supported: "
                        + filters.map(\.typeURL).joined(separator: ", "))
                }
                if name.hasPrefix("envoy.filters.http.") && name != reg.name && !(reg.name == RouterFilter.name && name == "envoy.router") {
                    throw item.error("HTTP filter '\(name)' does not match its typed_config \(type)")
                }
                let config = try reg.decode(t)
                try t.finish()
                entry = HTTPFilterEntry(name: name, typeURL: type, config: config)
            } else if name == RouterFilter.name || name == "envoy.router" {
                entry = HTTPFilterEntry(name: RouterFilter.name, typeURL: RouterFilter.typeURL, config: RouterConfig())
            } else {
                throw item.error("HTTP filter '\(name)' needs a typed_config naming its @type")
            }
            try f.finish()
            let isRouter = entry.typeURL == RouterFilter.typeURL
            if isRouter && i != items.count - 1 {
                throw item.error("the router filter must be the last HTTP filter")
            }
            if !isRouter && i == items.count - 1 {
                throw item.error("the last HTTP filter must be envoy.filters.http.router")
            }
            if let earlier = entries.firstIndex(where: { $0.name == name }) {
                throw item.error("HTTP filter name '\(name)' is used twice (also http_filters[\(earlier)]): "
                    + "typed_per_filter_config could not tell them apart")
            }
            entries.append(entry)
        }
        guard entries.last?.typeURL == RouterFilter.typeURL else {
            throw value.error("the last HTTP filter must be envoy.filters.http.router")
        }
        return entries
    }

    /// A `typed_per_filter_config` map: filter name → the filter's per-route message (or a FilterConfig wrapper).
    static func decodePerFilterConfig(_ value: ConfigValue?) throws -> [String: PerRouteFilterConfig] {
        guard let value else { return [:] }
        var out: [String: PerRouteFilterConfig] = [:]
        for (name, v) in try value.map() {
            let obj = try v.object()
            let typeValue = try obj.required("@type")
            let type = try typeValue.string()
            if type == routeFilterConfigType {
                try obj.unsupported(["is_optional"])
                let disabled = try obj.optional("disabled")?.bool() ?? false
                var entry = PerRouteFilterConfig(config: nil, disabled: disabled, typeURL: type)
                if let inner = obj.optional("config") {
                    let innerObj = try inner.object()
                    let innerType = try innerObj.required("@type")
                    let (typeURL, config) = try decodePerRoute(innerObj, type: innerType, filterName: name)
                    entry.config = config
                    entry.typeURL = typeURL
                } else if !disabled {
                    throw v.error("FilterConfig for '\(name)' has neither config nor disabled: true")
                }
                try obj.finish()
                out[name] = entry
            } else {
                let (typeURL, config) = try decodePerRoute(obj, type: typeValue, filterName: name)
                try obj.finish()
                out[name] = PerRouteFilterConfig(config: config, disabled: false, typeURL: typeURL)
            }
        }
        return out
    }

    private static func decodePerRoute(_ obj: ConfigObject, type typeValue: ConfigValue, filterName: String) throws
        -> (String, any Sendable)
    {
        let type = try typeValue.string()
        for reg in filters {
            for p in reg.perRoute where p.typeURL == type {
                return (type, try p.decode(obj))
            }
        }
        let known = filters.flatMap { $0.perRoute.map(\.typeURL) } + [routeFilterConfigType]
        throw typeValue.error("typed_per_filter_config for '\(filterName)': \(type) is not supported by Pilotfish yet; "
            + "supported: " + known.joined(separator: ", "))
    }
}
