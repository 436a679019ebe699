import SidecarCore

/// Every HTTP filter Pilotfish has. Adding a filter: one file under `HTTP/Filters/` that defines its
/// `registration`, and one line here.
enum HTTPFilterRegistry {
    static let filters: [HTTPFilterRegistration] = [
        RBACHTTPFilter.registration,
        FaultFilter.registration,
        LocalRateLimitFilter.registration,
        HealthCheckFilter.registration,
        AppProbesFilter.registration,
        CORSFilter.registration,
        CSRFFilter.registration,
        CompressorFilter.registration,
        DecompressorFilter.registration,
        GRPCHTTP1BridgeFilter.registration,
        GRPCWebFilter.registration,
        GRPCStatsFilter.registration,
        RouterFilter.registration,
    ]

    /// What config decoding is given to find these filters (it does not depend on them).
    static let catalog = HTTPFilterCatalog(filters: filters, defaultRouterConfig: RouterConfig())
}

extension HTTPFilterEntry {
    /// The entry's `typed_config` as its filter reads it: every registration above decodes to an `HTTPFilterConfig`.
    var filterConfig: any HTTPFilterConfig {
        guard let config = config as? any HTTPFilterConfig else {
            preconditionFailure("HTTP filter '\(name)' (\(typeURL)) decoded to \(type(of: config)), not an HTTPFilterConfig")
        }
        return config
    }
}

extension ConfigSession {
    /// A decoding pass that knows Pilotfish's HTTP filters.
    convenience init(excluded: Set<String> = [], recoverableLists: Set<String> = []) {
        self.init(excluded: excluded, recoverableLists: recoverableLists, httpFilters: HTTPFilterRegistry.catalog)
    }
}

extension Bootstrap {
    /// Loads a bootstrap from YAML or JSON text. On failure the `ConfigError` is the first problem by line and
    /// carries every other one found in `others`.
    public static func load(text: String) throws -> Bootstrap {
        try load(text: text, httpFilters: HTTPFilterRegistry.catalog)
    }

    public static func load(file: String) throws -> Bootstrap {
        try load(file: file, httpFilters: HTTPFilterRegistry.catalog)
    }
}

extension ConfigFields {
    /// Every field name in the lists, Pilotfish's HTTP filters' included.
    static let allNames = allNames(with: HTTPFilterRegistry.catalog)
}
