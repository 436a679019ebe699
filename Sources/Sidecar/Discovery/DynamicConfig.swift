import Foundation
import NIOConcurrencyHelpers
import SidecarCore
import SidecarUpstream

/// The bootstrap's discovery subscriptions and the config they make together: the static clusters plus the CDS
/// subscription's, the static listeners plus the LDS subscription's, and each connection manager's `rds` route
/// configuration, from files or the ADS stream. Each accepted update gives a new bootstrap to install; updates are
/// taken one at a time, so each one is built on the resources the others accepted last.
///
/// A listener from LDS whose routes come by RDS, or whose TLS contexts name secrets from a control plane, warms
/// (Envoy's word) until they arrive: it is left out of the bootstrap, or, when it replaces a listener of the same
/// name, the one it replaces keeps serving meanwhile. A cluster from CDS whose TLS context names secrets from a
/// control plane warms the same way.
final class DynamicConfig: @unchecked Sendable {
    let bootstrap: Bootstrap
    let clusters: DiscoverySubscription<Cluster>?
    let listeners: DiscoverySubscription<Listener>?
    /// The static listeners' route subscriptions: one per route configuration name and file, shared by the
    /// connection managers that name both.
    private let staticRoutes: [RDSConfig: DiscoverySubscription<RouteConfiguration>]
    /// The route subscriptions of listeners from LDS, made as listeners naming them arrive (guarded by `lock`).
    private var ldsRoutes: [RDSConfig: DiscoverySubscription<RouteConfiguration>] = [:]
    /// The LDS listeners of the bootstrap installed last, by name, as LDS gave them, with their revisions.
    /// Written under `lock`; its own lock lets admin read it while an update holds `lock` (an update waits for
    /// every event loop, admin's included).
    private let installedBox = NIOLockedValueBox<[String: LDSListener]>([:])
    private var installedListeners: [String: LDSListener] {
        get { installedBox.withLockedValue { $0 } }
        set { installedBox.withLockedValue { $0 = newValue } }
    }
    /// The clusters from CDS of the bootstrap installed last that name secrets from a control plane (the only ones
    /// that warm), by name. Written under `lock`; admin reads it too.
    private let installedClustersBox = NIOLockedValueBox<[String: Cluster]>([:])
    private var installedClusters: [String: Cluster] {
        get { installedClustersBox.withLockedValue { $0 } }
        set { installedClustersBox.withLockedValue { $0 = newValue } }
    }

    /// The clusters from CDS not installed as CDS gave them: they wait for secrets from a control plane.
    var warmingClusters: Set<String> {
        let installed = installedClusters
        return Set((clusters?.current.resources ?? []).filter {
            !($0.tls?.remoteSecretReferences.isEmpty ?? true) && installed[$0.name] != $0
        }.map(\.name))
    }
    private let registry: StatsRegistry
    /// The secrets control planes delivered: a listener from LDS naming one warms until it is there.
    private let secrets: SecretDiscovery
    private let lock = NIOLock()
    /// Held while `ldsRoutes` is read or replaced (admin reads it without `lock`).
    private let routesLock = NIOLock()

    init(bootstrap: Bootstrap, registry: StatsRegistry, httpFilters: HTTPFilterCatalog, secrets: SecretDiscovery) {
        self.bootstrap = bootstrap
        self.registry = registry
        self.secrets = secrets
        clusters = bootstrap.dynamicResources?.clusters.map { source in
            DiscoverySubscription(source: source, what: "CDS", scopes: ["cluster_manager.cds"], registry: registry) {
                try DiscoveryResources.clusters(path: $0)
            }
        }
        listeners = bootstrap.dynamicResources?.listeners.map { source in
            DiscoverySubscription(source: source, what: "LDS", scopes: ["listener_manager.lds"], registry: registry) {
                try DiscoveryResources.listeners(path: $0, httpFilters: httpFilters)
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
        staticRoutes = routes
    }

    var isEmpty: Bool { clusters == nil && listeners == nil && staticRoutes.isEmpty }

    /// Every route subscription: the static listeners' and those of listeners from LDS.
    var routes: [RDSConfig: DiscoverySubscription<RouteConfiguration>] {
        routesLock.withLock { staticRoutes.merging(ldsRoutes) { a, _ in a } }
    }

    /// What an update installs: the bootstrap, and the revision of each listener from LDS in it (its resource as
    /// delivered; a listener whose revision is unchanged keeps running as it is).
    struct Composed {
        var bootstrap: Bootstrap
        var revisions: [String: String]
        fileprivate var lds: [String: LDSListener]
        fileprivate var cds: [String: Cluster]
    }

    /// A listener from LDS as installed: the resource, its revision (the resource as delivered), and the version
    /// and time of the update that last changed it (what /config_dump shows).
    struct LDSListener: Sendable {
        var listener: Listener
        var revision: String
        var versionInfo: String
        var updated: Date
    }

    typealias Install = (_ bootstrap: Bootstrap, _ listenerRevisions: [String: String]) throws -> Void

    /// Reads every file once (the start): the bootstrap to start with, and its LDS listeners' revisions. A
    /// refused file leaves its resources out; the next file moved into place is tried again.
    func initial() -> (bootstrap: Bootstrap, revisions: [String: String]) {
        lock.withLock {
            clusters?.update {
                try checkClusters($0)
                try SidecarServer.checkTLSFiles(ofDynamic: $0)
            }
            listeners?.update { next in
                try checkListeners(next)
                subscribeRoutes(of: next)
            }
            for (rds, subscription) in routes where rds.source.file != nil {
                subscription.update { try Self.check($0, rds) }
            }
            let c = compose()
            installedListeners = c.lds
            installedClusters = c.cds
            return (c.bootstrap, c.revisions)
        }
    }

    /// Installs `c`; remembers its LDS listeners once installed.
    private func install(_ c: Composed, _ install: Install) throws {
        try install(c.bootstrap, c.revisions)
        installedListeners = c.lds
        installedClusters = c.cds
    }

    /// The bootstrap with the resources accepted last, or these instead.
    private func compose(clusters next: [Cluster]? = nil,
                         listeners nextListeners: (resources: [Listener], documents: [String], versions: [String])? = nil,
                         routes nextRoutes: [RDSConfig: RouteConfiguration] = [:]) -> Composed
    {
        var out = bootstrap
        // CDS clusters: those whose secrets arrived; the one installed before for the others (warming).
        var cds: [String: Cluster] = [:]
        var fromCDS: [Cluster] = []
        let installed = installedClusters
        for c in next ?? clusters?.current.resources ?? [] {
            let remote = c.tls?.remoteSecretReferences ?? []
            guard !remote.isEmpty else {
                fromCDS.append(c)
                continue
            }
            guard let chosen = remote.allSatisfy(secrets.has) ? c : installed[c.name] else { continue }
            cds[c.name] = chosen
            fromCDS.append(chosen)
        }
        out.clusters = bootstrap.clusters + fromCDS
        let routes = self.routes
        func routeConfig(_ rds: RDSConfig) -> RouteConfiguration? {
            nextRoutes[rds] ?? routes[rds]?.current.resources.first
        }
        // LDS listeners: those whose routes arrived; the one installed before for the others (warming).
        var lds: [String: LDSListener] = [:]
        var order: [String] = []
        if let subscription = listeners {
            let wanted = nextListeners ?? {
                let state = subscription.current
                return (state.resources, state.documents,
                        state.resourceVersions ?? Array(repeating: state.versionInfo, count: state.resources.count))
            }()
            let installed = installedListeners
            for (i, (l, revision)) in zip(wanted.resources, wanted.documents).enumerated() {
                let warm = Self.connectionManagers(l).allSatisfy { $0.rds == nil || routeConfig($0.rds!) != nil }
                    && Self.remoteSecrets(of: l).allSatisfy(secrets.has)
                if let before = installed[l.name], before.revision == revision {
                    lds[l.name] = before
                } else if warm {
                    lds[l.name] = LDSListener(listener: l, revision: revision, versionInfo: wanted.versions[i], updated: Date())
                } else if let before = installed[l.name] {
                    lds[l.name] = before
                } else {
                    continue
                }
                order.append(l.name)
            }
        }
        let fromLDS = order.map { lds[$0]!.listener }
        // A fallback listener (pod defaults with a control plane) gives way to an LDS listener at its address.
        let taken = Set(fromLDS.filter(\.bindToPort).map(\.address))
        out.listeners.removeAll { bootstrap.fallbackListeners.contains($0.name) && taken.contains($0.address) }
        out.listeners += fromLDS
        func resolve(_ chain: inout FilterChain) {
            guard case .httpConnectionManager(var hcm) = chain.network, let rds = hcm.rds else { return }
            if let rc = routeConfig(rds) { hcm.routeConfig = rc }
            chain.network = .httpConnectionManager(hcm)
        }
        for l in out.listeners.indices {
            for c in out.listeners[l].filterChains.indices { resolve(&out.listeners[l].filterChains[c]) }
            if out.listeners[l].defaultFilterChain != nil { resolve(&out.listeners[l].defaultFilterChain!) }
        }
        return Composed(bootstrap: out, revisions: lds.mapValues(\.revision), lds: lds, cds: cds)
    }

    /// Reads the CDS file again; `install` gets the bootstrap with its clusters. Returns why it was refused.
    @discardableResult
    func reloadClusters(_ install: Install) -> String? {
        lock.withLock {
            clusters?.update { next in
                try checkClusters(next)
                try self.install(compose(clusters: next), install)
            }
        }
    }

    /// Reads the LDS file again; `install` gets the bootstrap with its listeners. Returns why it was refused.
    @discardableResult
    func reloadListeners(_ install: Install) -> String? {
        lock.withLock {
            guard let listeners, let path = listeners.source.file?.path else { return nil }
            // The documents are the revisions: read the file once, as the subscription will.
            let decoded = Result { try DiscoveryResources.listeners(path: path, httpFilters: HTTPFilterRegistry.catalog) }
            return listeners.update(with: decoded, origin: path) { next in
                try applyListeners(next, decoded, install)
            }
        }
    }

    /// An LDS response from the ADS stream (decoded, or why not). Returns why it was refused.
    func applyADSListeners(_ decoded: Result<DiscoveryFile<Listener>, Error>, _ install: Install) -> String? {
        lock.withLock {
            guard let listeners, listeners.source == .ads else { return "LDS does not come from ADS" }
            return listeners.update(with: decoded) { next in
                try applyListeners(next, decoded, install)
            }
        }
    }

    private func applyListeners(_ next: [Listener], _ decoded: Result<DiscoveryFile<Listener>, Error>,
                                _ install: Install) throws {
        let file = try decoded.get()
        try checkListeners(next)
        let before = routes
        subscribeRoutes(of: next)
        do {
            // Delta xDS: each listener's own version, as Envoy shows it.
            let versions = file.resourceVersions ?? Array(repeating: file.versionInfo, count: next.count)
            try self.install(compose(listeners: (next, file.documents, versions)), install)
        } catch {
            routesLock.withLock { ldsRoutes = ldsRoutes.filter { before[$0.key] != nil } }
            throw error
        }
        // Routes no listener from LDS names any more are unsubscribed (their counters stay).
        let named = Set(installedListeners.values.flatMap { Self.connectionManagers($0.listener) }.compactMap(\.rds)
            + next.flatMap(Self.connectionManagers).compactMap(\.rds))
        routesLock.withLock { ldsRoutes = ldsRoutes.filter { named.contains($0.key) } }
    }

    /// Secrets from a control plane arrived: the listeners and clusters that waited for them (listeners: and have
    /// their routes) are installed. Returns why that was refused.
    @discardableResult
    func secretsArrived(_ install: Install) -> String? {
        lock.withLock {
            guard listeners != nil || clusters != nil else { return nil }
            let c = compose()
            guard c.revisions != installedListeners.mapValues(\.revision) || c.cds != installedClusters else { return nil }
            do {
                try self.install(c, install)
                return nil
            } catch {
                Log.warning("sds: the resources that waited for secrets were refused", [("error", "\(error)")])
                return "\(error)"
            }
        }
    }

    /// The secrets from control planes that the TLS contexts of `listener`'s filter chains name.
    static func remoteSecrets(of listener: Listener) -> [SDSSecretReference] {
        ConfigSnapshot.networkChains(listener).flatMap { $0.tls?.remoteSecretReferences ?? [] }
    }

    /// The secrets from control planes that the resources from discovery name: every listener from LDS (warming
    /// ones too) and every cluster from CDS.
    var dynamicSecretReferences: Set<SDSSecretReference> {
        var out = Set<SDSSecretReference>()
        for l in listeners?.current.resources ?? [] { out.formUnion(Self.remoteSecrets(of: l)) }
        for l in installedListeners.values { out.formUnion(Self.remoteSecrets(of: l.listener)) }
        for c in clusters?.current.resources ?? [] { out.formUnion(c.tls?.remoteSecretReferences ?? []) }
        return out
    }

    /// A route subscription for each `rds` of `listeners` (from LDS) that has none.
    private func subscribeRoutes(of listeners: [Listener]) {
        let catalog = HTTPFilterRegistry.catalog
        for hcm in listeners.flatMap(Self.connectionManagers) {
            guard let rds = hcm.rds else { continue }
            let scope = "http.\(hcm.statPrefix).rds.\(rds.routeConfigName)"
            if let existing = staticRoutes[rds] ?? routesLock.withLock({ ldsRoutes[rds] }) {
                existing.register(scope: scope, in: registry)
                continue
            }
            let subscription = DiscoverySubscription<RouteConfiguration>(
                source: rds.source, what: "RDS", scopes: [scope], registry: registry, emptyCounted: true
            ) { try DiscoveryResources.routes(path: $0, httpFilters: catalog) }
            routesLock.withLock { ldsRoutes[rds] = subscription }
        }
    }

    /// What LDS may not do: replace a static listener, take routes from a file (file RDS is for static
    /// listeners), name ADS without a stream, or use SDS secrets from files (the secret watcher knows the static
    /// ones only; secrets from a control plane are taken).
    private func checkListeners(_ next: [Listener]) throws {
        let statics = Set(bootstrap.listeners.map(\.name)).subtracting(bootstrap.fallbackListeners)
        for (i, l) in next.enumerated() {
            if statics.contains(l.name) {
                throw ConfigError(path: "resources[\(i)].name", line: nil,
                                  message: "listener '\(l.name)' is a static listener; LDS cannot replace it")
            }
            for (c, chain) in ConfigSnapshot.networkChains(l).enumerated() {
                let at = "resources[\(i)].filter_chains[\(c)]"
                if case .httpConnectionManager(let hcm) = chain.network, let rds = hcm.rds {
                    try checkSource(rds.source, at: at + ".rds.config_source", file:
                        "a listener from LDS takes its routes from 'ads: {}', api_config_source or inline "
                        + "(route_config); RDS files are for static listeners in Pilotfish")
                }
                for ref in chain.tls?.secretReferences ?? [] {
                    try checkSource(ref.source, at: at + ".transport_socket", file:
                        "listener '\(l.name)': a listener from LDS takes SDS secrets from a control plane "
                        + "('ads: {}' or api_config_source) or certificate files, not SDS files")
                }
            }
        }
    }

    /// A config source a resource from discovery names: `file` is why a file is refused (nil: files are taken);
    /// `ads: {}` needs the bootstrap's ADS stream, `api_config_source` a static cluster with an address.
    private func checkSource(_ source: ConfigSource, at path: String, file: String?) throws {
        switch source {
        case .file:
            if let file { throw ConfigError(path: path, line: nil, message: file) }
        case .ads where bootstrap.dynamicResources?.ads == nil:
            throw ConfigError(path: path, line: nil, message: "'ads: {}' needs dynamic_resources.ads_config in the bootstrap")
        case .grpc(let api):
            try Bootstrap.checkStreamCluster(api.clusterName, in: bootstrap.clusters) {
                ConfigError(path: path, line: nil, message: $0)
            }
        case .ads:
            break
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
        for (i, c) in next.enumerated() {
            for ref in c.tls?.remoteSecretReferences ?? [] {
                try checkSource(ref.source, at: "resources[\(i)].transport_socket", file: nil)
            }
        }
    }

    /// Reads `rds`'s file again; `install` gets the bootstrap with its route configuration.
    @discardableResult
    func reloadRoutes(_ rds: RDSConfig, _ install: Install) -> String? {
        lock.withLock {
            routes[rds]?.update { next in
                try Self.check(next, rds)
                guard let rc = next.first else { return }
                try self.install(compose(routes: [rds: rc]), install)
            }
        }
    }

    /// A CDS response from the ADS stream (decoded, or why not); `install` gets the bootstrap with its clusters.
    /// Returns why it was refused.
    func applyADSClusters(_ decoded: Result<DiscoveryFile<Cluster>, Error>, _ install: Install) -> String? {
        lock.withLock {
            guard let clusters, clusters.source == .ads else { return "CDS does not come from ADS" }
            return clusters.update(with: decoded) { next in
                try checkClusters(next)
                try self.install(compose(clusters: next), install)
            }
        }
    }

    /// The route configuration names wanted from the ADS stream.
    var adsRouteNames: Set<String> { routeNames(from: .ads) }

    /// The route configuration names wanted from `source` (the ADS stream, or a route stream of its own).
    func routeNames(from source: ConfigSource) -> Set<String> {
        Set(routes.keys.filter { $0.source == source }.map(\.routeConfigName))
    }

    /// The route streams (`api_config_source`) some route subscription wants.
    var routeStreams: Set<ADSConfig> {
        Set(routes.keys.compactMap { if case .grpc(let api) = $0.source { return api }; return nil })
    }

    /// LDS from the ADS stream.
    var listenersFromADS: Bool { listeners?.source == .ads }

    /// An RDS response from the ADS stream: each route configuration in it goes to the connection managers that
    /// name it, in one install (a response carries only those that changed). Returns why it was refused.
    func applyADSRoutes(_ decoded: Result<DiscoveryFile<RouteConfiguration>, Error>, from source: ConfigSource = .ads,
                        _ install: Install) -> String? {
        lock.withLock {
            let routes = self.routes
            let subscriptions = routes.filter { $0.key.source == source }
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
            do { try self.install(compose(routes: next), install) } catch { failure = error }
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
        bootstrap.listeners.flatMap(connectionManagers)
    }

    /// A listener's connection managers, in chain order.
    static func connectionManagers(_ listener: Listener) -> [HTTPConnectionManagerConfig] {
        ConfigSnapshot.networkChains(listener).compactMap {
            if case .httpConnectionManager(let hcm) = $0.network { return hcm }
            return nil
        }
    }

    /// The LDS listeners for admin: each installed one with its revision, and each wanted one that is not
    /// installed as it is wanted (warming: its routes have not arrived).
    func listenerStates() -> (active: [LDSListener], warming: [(listener: Listener, document: String)]) {
        let state = listeners?.current
        let installed = installedListeners
        let active = installed.values.sorted { $0.listener.name < $1.listener.name }
        let warming = zip(state?.resources ?? [], state?.documents ?? []).filter {
            installed[$0.0.name]?.revision != $0.1
        }
        return (active, warming.map { (listener: $0.0, document: $0.1) })
    }

    /// A watcher per file, each calling `changed` with what to reload; not started.
    func watchers(_ changed: @escaping @Sendable (Reload) -> Void) throws -> [FileMoveWatcher] {
        var out: [FileMoveWatcher] = []
        if let w = try clusters?.watch({ changed(.clusters) }) { out.append(w) }
        if let w = try listeners?.watch({ changed(.listeners) }) { out.append(w) }
        for (rds, subscription) in staticRoutes {
            if let w = try subscription.watch({ changed(.routes(rds)) }) { out.append(w) }
        }
        return out
    }

    enum Reload: Sendable {
        case clusters
        case listeners
        case routes(RDSConfig)
    }
}
