import NIOConcurrencyHelpers
import SidecarCore

/// The bootstrap's discovery subscriptions and the config they make together: the static clusters plus the CDS
/// subscription's, and each connection manager's `rds` route configuration, from files or the ADS stream. Each
/// accepted update gives a new bootstrap to install; updates are taken one at a time, so each one is built on the
/// resources the others accepted last.
final class DynamicConfig: Sendable {
    let bootstrap: Bootstrap
    let clusters: DiscoverySubscription<Cluster>?
    /// One subscription per route configuration name and file, shared by the connection managers that name both.
    let routes: [RDSConfig: DiscoverySubscription<RouteConfiguration>]
    private let lock = NIOLock()

    init(bootstrap: Bootstrap, registry: StatsRegistry, httpFilters: HTTPFilterCatalog) {
        self.bootstrap = bootstrap
        clusters = bootstrap.dynamicResources?.clusters.map { source in
            DiscoverySubscription(source: source, what: "CDS", scopes: ["cluster_manager.cds"], registry: registry) {
                try DiscoveryResources.clusters(path: $0)
            }
        }
        var scopes: [RDSConfig: [String]] = [:]
        for hcm in Self.connectionManagers(bootstrap) {
            guard let rds = hcm.rds else { continue }
            let scope = "http.\(hcm.statPrefix).rds.\(rds.routeConfigName)"
            if !(scopes[rds]?.contains(scope) ?? false) { scopes[rds, default: []].append(scope) }
        }
        var routes: [RDSConfig: DiscoverySubscription<RouteConfiguration>] = [:]
        for (rds, scopes) in scopes {
            routes[rds] = DiscoverySubscription(source: rds.source, what: "RDS", scopes: scopes, registry: registry,
                                           emptyCounted: true) {
                try DiscoveryResources.routes(path: $0, httpFilters: httpFilters)
            }
        }
        self.routes = routes
    }

    var isEmpty: Bool { clusters == nil && routes.isEmpty }

    /// Reads every file once (the start): the bootstrap to start with. A refused file leaves its resources
    /// out; the next file moved into place is tried again.
    func initial() -> Bootstrap {
        lock.withLock {
            clusters?.update {
                try checkClusters($0)
                try SidecarServer.checkTLSFiles(ofDynamic: $0)
            }
            for (rds, subscription) in routes { subscription.update { try Self.check($0, rds) } }
            return compose()
        }
    }

    /// The bootstrap with the resources accepted last, or these instead.
    private func compose(clusters next: [Cluster]? = nil, routes nextRoutes: [RDSConfig: RouteConfiguration] = [:])
        -> Bootstrap
    {
        var out = bootstrap
        out.clusters = bootstrap.clusters + (next ?? clusters?.current.resources ?? [])
        guard !routes.isEmpty else { return out }
        func resolve(_ chain: inout FilterChain) {
            guard case .httpConnectionManager(var hcm) = chain.network, let rds = hcm.rds else { return }
            if let rc = nextRoutes[rds] ?? routes[rds]?.current.resources.first { hcm.routeConfig = rc }
            chain.network = .httpConnectionManager(hcm)
        }
        for l in out.listeners.indices {
            for c in out.listeners[l].filterChains.indices { resolve(&out.listeners[l].filterChains[c]) }
            if out.listeners[l].defaultFilterChain != nil { resolve(&out.listeners[l].defaultFilterChain!) }
        }
        return out
    }

    /// Reads the CDS file again; `install` gets the bootstrap with its clusters. Returns why it was refused.
    @discardableResult
    func reloadClusters(_ install: (Bootstrap) throws -> Void) -> String? {
        lock.withLock {
            clusters?.update { next in
                try checkClusters(next)
                try install(compose(clusters: next))
            }
        }
    }

    /// CDS may not replace a static cluster, nor take endpoints from an ADS stream the bootstrap does not have.
    private func checkClusters(_ next: [Cluster]) throws {
        let statics = Set(bootstrap.clusters.map(\.name))
        for (i, c) in next.enumerated() where statics.contains(c.name) {
            throw ConfigError(path: "resources[\(i)].name", line: nil,
                              message: "cluster '\(c.name)' is a static cluster; CDS cannot replace it")
        }
        if bootstrap.dynamicResources?.ads == nil {
            for (i, c) in next.enumerated() where c.eds?.source == .ads {
                throw ConfigError(path: "resources[\(i)].eds_cluster_config.eds_config", line: nil,
                                  message: "'ads: {}' needs dynamic_resources.ads_config in the bootstrap")
            }
        }
    }

    /// Reads `rds`'s file again; `install` gets the bootstrap with its route configuration.
    @discardableResult
    func reloadRoutes(_ rds: RDSConfig, _ install: (Bootstrap) throws -> Void) -> String? {
        lock.withLock {
            routes[rds]?.update { next in
                try Self.check(next, rds)
                guard let rc = next.first else { return }
                try install(compose(routes: [rds: rc]))
            }
        }
    }

    /// A CDS response from the ADS stream (decoded, or why not); `install` gets the bootstrap with its clusters.
    /// Returns why it was refused.
    func applyADSClusters(_ decoded: Result<DiscoveryFile<Cluster>, Error>, _ install: (Bootstrap) throws -> Void)
        -> String?
    {
        lock.withLock {
            guard let clusters, clusters.source == .ads else { return "CDS does not come from ADS" }
            return clusters.update(with: decoded) { next in
                try checkClusters(next)
                try install(compose(clusters: next))
            }
        }
    }

    /// The route configuration names wanted from the ADS stream.
    var adsRouteNames: Set<String> { Set(routes.keys.filter { $0.source == .ads }.map(\.routeConfigName)) }

    /// An RDS response from the ADS stream: each route configuration in it goes to the connection managers that
    /// name it, in one install (a response carries only those that changed). Returns why it was refused.
    func applyADSRoutes(_ decoded: Result<DiscoveryFile<RouteConfiguration>, Error>,
                        _ install: (Bootstrap) throws -> Void) -> String? {
        lock.withLock {
            let subscriptions = routes.filter { $0.key.source == .ads }
            let file: DiscoveryFile<RouteConfiguration>
            switch decoded {
            case .failure:
                var error: String?
                for s in subscriptions.values { error = s.update(with: decoded) { _ in } }
                return error
            case .success(let f):
                file = f
            }
            var next: [RDSConfig: RouteConfiguration] = [:]
            var parts: [RDSConfig: DiscoveryFile<RouteConfiguration>] = [:]
            for rds in subscriptions.keys {
                guard let i = file.resources.firstIndex(where: { $0.name == rds.routeConfigName }) else { continue }
                next[rds] = file.resources[i]
                var part = DiscoveryFile(versionInfo: file.versionInfo, resources: [file.resources[i]],
                                         documents: [file.documents[i]])
                part.resourceVersions = file.resourceVersions.map { [$0[i]] }
                parts[rds] = part
            }
            guard !next.isEmpty else { return nil }
            var failure: Error?
            do { try install(compose(routes: next)) } catch { failure = error }
            var refused: String?
            for (rds, part) in parts {
                let error = subscriptions[rds]!.update(with: .success(part)) { _ in if let failure { throw failure } }
                refused = refused ?? error
            }
            return refused
        }
    }

    /// Envoy's rules for an RDS update: one route configuration, of the name asked for (none: nothing changes).
    private static func check(_ configs: [RouteConfiguration], _ rds: RDSConfig) throws {
        guard configs.count <= 1 else {
            throw ConfigError(path: "resources", line: nil, message: "Unexpected RDS resource length: \(configs.count)")
        }
        if let rc = configs.first, rc.name != rds.routeConfigName {
            throw ConfigError(path: "resources[0].name", line: nil,
                              message: "Unexpected RDS configuration (expecting \(rds.routeConfigName)): \(rc.name)")
        }
    }

    /// Every connection manager of the bootstrap's listeners, in order.
    static func connectionManagers(_ bootstrap: Bootstrap) -> [HTTPConnectionManagerConfig] {
        bootstrap.listeners.flatMap(ConfigSnapshot.networkChains).compactMap {
            if case .httpConnectionManager(let hcm) = $0.network { return hcm }
            return nil
        }
    }

    /// A watcher per file, each calling `changed` with what to reload; not started.
    func watchers(_ changed: @escaping @Sendable (Reload) -> Void) throws -> [FileMoveWatcher] {
        var out: [FileMoveWatcher] = []
        if let w = try clusters?.watch({ changed(.clusters) }) { out.append(w) }
        for (rds, subscription) in routes {
            if let w = try subscription.watch({ changed(.routes(rds)) }) { out.append(w) }
        }
        return out
    }

    enum Reload: Sendable {
        case clusters
        case routes(RDSConfig)
    }
}
