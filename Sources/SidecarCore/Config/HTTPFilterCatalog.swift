/// How one HTTP filter extension is found in a config: by the `@type` of its `typed_config`, as Envoy finds it.
package struct HTTPFilterRegistration: Sendable {
    package let typeURL: String
    /// The extension's canonical name (`envoy.filters.http.fault`).
    package let name: String
    /// Decodes the filter's `typed_config` into the value the HTTP layer builds the filter from (an
    /// `HTTPFilterConfig` there).
    package let decode: @Sendable (ConfigObject) throws -> any Sendable
    /// The `@type`s a route's `typed_per_filter_config` may give this filter, and how to decode each.
    package var perRoute: [(typeURL: String, decode: @Sendable (ConfigObject) throws -> any Sendable)] = []
    /// The fields of the messages this filter's decoders read (see `ConfigFields`): a typo in its config is then
    /// named before anything else is said about the mapping.
    package var fields: [ConfigFields.Message] = []

    package init(
        typeURL: String, name: String, decode: @escaping @Sendable (ConfigObject) throws -> any Sendable,
        perRoute: [(typeURL: String, decode: @Sendable (ConfigObject) throws -> any Sendable)] = [],
        fields: [ConfigFields.Message] = []
    ) {
        self.typeURL = typeURL
        self.name = name
        self.decode = decode
        self.perRoute = perRoute
        self.fields = fields
    }
}

/// A decoded `http_filters` entry.
public struct HTTPFilterEntry: Sendable {
    public var name: String
    public var typeURL: String
    /// What the filter's registration decoded; the HTTP layer makes the filter's factory from it.
    package let config: any Sendable
}

/// The HTTP filters a config may name, and how each is decoded. Config decoding does not know the filters: the layer
/// that implements them (`HTTPFilterRegistry`) hands their registrations over in the decoding's `ConfigSession`, as
/// Envoy's config validation finds filter factories in a registry they add themselves to.
package struct HTTPFilterCatalog: Sendable {
    package let filters: [HTTPFilterRegistration]
    /// The router's config when `http_filters` names it without a `typed_config`; nil: the router needs one.
    package let defaultRouterConfig: (any Sendable)?
    /// Every filter's messages, for `ConfigFields`.
    package let fields: [ConfigFields.Message]

    package init(filters: [HTTPFilterRegistration], defaultRouterConfig: (any Sendable)?) {
        self.filters = filters
        self.defaultRouterConfig = defaultRouterConfig
        self.fields = filters.flatMap(\.fields)
    }

    /// No HTTP filters: for decoding what holds none (secrets, runtime layers, a value decoded on its own).
    package static let none = HTTPFilterCatalog(filters: [], defaultRouterConfig: nil)

    package static let routerName = "envoy.filters.http.router"
    package static let routeFilterConfigType = "type.googleapis.com/envoy.config.route.v3.FilterConfig"

    package func registration(forType typeURL: String) -> HTTPFilterRegistration? {
        filters.first { $0.typeURL == typeURL }
    }

    /// The connection manager's `http_filters`: every entry names its extension by `typed_config.@type`; the router
    /// must be last. Unlike Envoy 1.40 we accept the router without `typed_config`, as the seed's examples write
    /// it: the intent is unambiguous.
    package func decodeChain(_ value: ConfigValue) throws -> [HTTPFilterEntry] {
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
                if name.hasPrefix("envoy.filters.http.") && name != reg.name && !(reg.name == Self.routerName && name == "envoy.router") {
                    throw item.error("HTTP filter '\(name)' does not match its typed_config \(type)")
                }
                let config = try reg.decode(t)
                try t.finish()
                entry = HTTPFilterEntry(name: name, typeURL: type, config: config)
            } else if name == Self.routerName || name == "envoy.router", let config = defaultRouterConfig {
                entry = HTTPFilterEntry(name: Self.routerName, typeURL: Listener.routerType, config: config)
            } else {
                throw item.error("HTTP filter '\(name)' needs a typed_config naming its @type")
            }
            try f.finish()
            let isRouter = entry.typeURL == Listener.routerType
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
        guard entries.last?.typeURL == Listener.routerType else {
            throw value.error("the last HTTP filter must be envoy.filters.http.router")
        }
        return entries
    }

    /// A `typed_per_filter_config` map: filter name → the filter's per-route message (or a FilterConfig wrapper).
    package func decodePerFilterConfig(_ value: ConfigValue?) throws -> [String: PerRouteFilterConfig] {
        guard let value else { return [:] }
        var out: [String: PerRouteFilterConfig] = [:]
        for (name, v) in try value.map() {
            let obj = try v.object()
            let typeValue = try obj.required("@type")
            let type = try typeValue.string()
            if type == Self.routeFilterConfigType {
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

    private func decodePerRoute(_ obj: ConfigObject, type typeValue: ConfigValue, filterName: String) throws
        -> (String, any Sendable)
    {
        let type = try typeValue.string()
        for reg in filters {
            for p in reg.perRoute where p.typeURL == type {
                return (type, try p.decode(obj))
            }
        }
        let known = filters.flatMap { $0.perRoute.map(\.typeURL) } + [Self.routeFilterConfigType]
        throw typeValue.error("typed_per_filter_config for '\(filterName)': \(type) is not supported by Pilotfish yet; "
            + "supported: " + known.joined(separator: ", "))
    }
}
