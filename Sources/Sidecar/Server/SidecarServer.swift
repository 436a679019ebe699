import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Yams
import SidecarCore
import SwiftProtobuf
import XDSMessages
import SidecarUpstream
import SidecarTracing

/// The running proxy: one event loop per worker, the configured listeners, the admin listener.
public final class SidecarServer: @unchecked Sendable {
    // Mutable state is set during start() on the caller's thread and then only read, except `stopped`,
    // which is guarded by the promise machinery.
    public let bootstrap: Bootstrap
    public let concurrency: Int
    public let drainTime: TimeAmount
    let registry = StatsRegistry()
    /// Keeps each cluster's `ClusterInfo` from one config snapshot to the next.
    let clusterManager: ClusterManager
    /// The config snapshot installed last (what new streams start on once every worker has it).
    private let installed: NIOLockedValueBox<ConfigSnapshot>
    /// Why the bootstrap's own snapshot could not be built (thrown by `start`).
    private var snapshotError: Error?
    /// Serialises `install` calls.
    let installLock = NIOLock()
    let group: MultiThreadedEventLoopGroup
    private(set) var workers: [(loop: EventLoop, worker: NIOLoopBound<Worker>)] = []
    private var adminChannel: Channel?
    /// The listeners: active generations, draining ones, sockets (see `SidecarServer+Listeners.swift`). Changed
    /// under `installLock`.
    let listenerSet = NIOLockedValueBox(ListenerSet())
    let listenerCounters = ListenerCounters()
    /// Stats are registered when a listener generation is made, once per stat prefix (chains may share one, as
    /// in Envoy). Changed under `installLock` (or in `init`).
    var httpStats: [String: HTTPStats] = [:]
    var tcpStats: [String: TCPProxyStats] = [:]
    var listenerStats: [SocketAddressConfig: ListenerStats] = [:]
    var listenerTLSStats: [SocketAddressConfig: TLSStats] = [:]
    var rbacStats: [RBACStats.Scope: RBACStats] = [:]
    private var secretWatcher: SecretWatcher?
    /// Secrets from control planes (SDS over ADS or a secret stream of its own).
    let secretDiscovery: SecretDiscovery
    /// The overload manager's global downstream connection count, when `overload_manager` configures it.
    let globalConnectionLimit: GlobalConnectionLimit?
    let startTime = Date()
    /// Every histogram's merged counts at the last two stats flushes (see `SidecarServer+Histograms.swift`).
    let flushedHistograms = NIOLockedValueBox(FlushedHistograms())
    /// The periodic flush, started with the workers and cancelled when the server stops.
    var statsFlushTask: RepeatedTask?
    let configSource: String?
    /// The CDS and RDS files, when the bootstrap names any.
    let dynamicConfig: DynamicConfig?
    /// Re-read the discovery files when new ones are moved into place (started with the workers).
    private var discoveryWatchers: [FileMoveWatcher] = []
    /// The aggregated discovery stream, when `ads_config` names a control plane (started with the workers).
    private var adsClient: ADSClient?
    /// Route and secret streams (`api_config_source`), by service and source (see `SidecarServer+SourceStreams.swift`).
    let sourceStreamClients = NIOLockedValueBox<[SourceStream: ADSClient]>([:])
    /// Admin /ready answers 503 PRE_INITIALIZING while set: from the start until the ADS stream's first fetch
    /// is over, as Envoy's init manager holds the server.
    private let preInitializing = NIOLockedValueBoxBool()
    var isPreInitializing: Bool { preInitializing.value }
    let clusterManagerStats: ClusterManagerStats
    /// The endpoints of EDS clusters, from their files.
    let endpointDiscovery: EndpointDiscovery
    private let stopPromise: EventLoopPromise<Void>
    private let stopping = NIOLockedValueBoxBool()
    /// One active health checker and DNS refresh per cluster of the installed snapshot that has them, by the
    /// cluster's `ClusterInfo`; nil once the server stopped them all. Held only to read or change the table, never
    /// while waiting on a loop (`finishStop` may run on a loop `install` waits for).
    private let services = NIOLockedValueBox<ClusterServices?>(ClusterServices())

    private struct ClusterServices {
        var healthCheckers: [ObjectIdentifier: ActiveHealthChecker] = [:]
        var dnsRefreshes: [ObjectIdentifier: RepeatedTask] = [:]
    }
    let threadPool = NIOThreadPool(numberOfThreads: 1)
    /// Admin /ready answers 503 INITIALIZING while set (see `holdReadiness`).
    private let initializing = NIOLockedValueBoxBool()
    var isInitializing: Bool { initializing.value }
    /// Keeps admin /ready at 503 INITIALIZING after `start` until `releaseReadiness`: the binary drops its
    /// capabilities in between, and whoever polls /ready (a kubelet, a test reading /proc) sees the proxy only
    /// once no thread holds what it no longer needs.
    public func holdReadiness() { initializing.value = true }
    public func releaseReadiness() { initializing.value = false }
    /// The tracers' span exporters by `exporterKey`, and the thread they send from (see SidecarServer+Tracing).
    var spanExporters: [String: SpanExporter] = [:]
    lazy var tracingGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    /// The runtime and the health-check-failed flag, shared with workers, filters and admin.
    let context: ServerContext

    public init(bootstrap: Bootstrap, concurrency: Int, drainTime: TimeAmount = .seconds(5), configSource: String? = nil) {
        self.bootstrap = bootstrap
        self.concurrency = max(1, concurrency)
        self.drainTime = drainTime
        self.configSource = configSource
        let registry = self.registry
        let context = ServerContext(runtime: Runtime(bootstrap.layeredRuntime ?? LayeredRuntimeConfig()),
                                    localClusterName: bootstrap.nodeCluster ?? "")
        self.context = context
        let clusterManager = ClusterManager(registry: registry)
        self.clusterManager = clusterManager
        // The CDS file's clusters join the static ones from the start, and RDS files give their connection
        // managers' routes; a file refused now leaves its resources out, and the next one moved into place is
        // tried again.
        // Readiness waits for the first fetch, and for secrets from control planes the static resources name.
        preInitializing.value = bootstrap.dynamicResources?.ads != nil
            || bootstrap.tlsContexts.contains { !$0.config.remoteSecretReferences.isEmpty }
        let secretDiscovery = SecretDiscovery(registry: registry)
        self.secretDiscovery = secretDiscovery
        let dynamic = DynamicConfig(bootstrap: bootstrap, registry: registry, httpFilters: HTTPFilterRegistry.catalog,
                                    secrets: secretDiscovery)
        dynamicConfig = dynamic.isEmpty ? nil : dynamic
        let (effective, revisions) = dynamicConfig?.initial() ?? (bootstrap, [:])
        endpointDiscovery = EndpointDiscovery(registry: registry)
        // Not watching yet, so nothing here throws.
        try? endpointDiscovery.sync(effective.clusters)
        clusterManagerStats = ClusterManagerStats(registry: registry)
        clusterManagerStats.count(from: [], to: effective.clusters)
        let infos = clusterManager.infos(for: effective.clusters)
        clusterManager.commit(infos)
        installed = NIOLockedValueBox(ConfigSnapshot(version: 1, clusters: infos))
        globalConnectionLimit = bootstrap.overloadManager?.maxActiveDownstreamConnections.map {
            GlobalConnectionLimit(maxConnections: $0)
        }
        globalConnectionLimit?.registerStats(registry: registry)
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: self.concurrency)
        self.stopPromise = group.next().makePromise()
        // The listeners as generations, their sockets to be bound by `start`.
        var set = ListenerSet()
        do {
            let plan = try planListeners(effective.listeners, revisions: revisions, in: &set)
            set.active = plan.active.map(\.generation)
            listenerCounters.added.wrappingIncrement(by: plan.added, ordering: .relaxed)
            let served = Self.acceptors(set.active)
            let snapshot = try ConfigSnapshot(
                version: 1, listeners: set.active.map(\.listenerTables), clusters: infos, runtime: context.runtime,
                acceptors: served.acceptors, handoff: served.handoff)
            installed.withLockedValue { $0 = snapshot }
        } catch {
            snapshotError = error
        }
        listenerSet.withLockedValue { $0 = set }
        registerListenerManagerStats()
        // Registered here, with every other stat, before workers size their stat arrays.
        context.runtime.registerStats(registry)
        // Envoy's `server.live` follows /healthcheck/fail at once; `server.state` (0 LIVE, 1 DRAINING) is refreshed
        // at each stats flush in Envoy (every 5s), here whenever it is read.
        let stopping = self.stopping
        registry.registerComputed("server.live", family: "server.live") {
            context.healthCheckFailed || stopping.value ? 0 : 1
        }
        registry.registerComputed("server.state", family: "server.state") {
            context.healthCheckFailed || stopping.value ? 1 : 0
        }
        // Envoy's `ssl_context_update_by_sds`, per listener address and per cluster, for contexts fed by SDS.
        var listenerSDS: [SocketAddressConfig: [TLSContextProvider]] = [:]
        for g in set.active where !g.tlsProviders.isEmpty {
            listenerSDS[g.config.address, default: []] += g.tlsProviders
        }
        var sdsScopes: [(scope: String, factory: String, label: (String, String), providers: [TLSContextProvider])] = []
        for (address, providers) in listenerSDS.sorted(by: { "\($0.key)" < "\($1.key)" }) {
            let name = "\(address.address)_\(address.port)"
            sdsScopes.append(("listener.\(name)", "server_ssl_socket_factory", ("envoy_listener_address", name), providers))
        }
        for c in infos {
            if let p = c.tls?.provider {
                sdsScopes.append(("cluster.\(c.config.name)", "client_ssl_socket_factory", ("envoy_cluster_name", c.config.name), [p]))
            }
        }
        for entry in sdsScopes {
            let providers = entry.providers.filter { !$0.secretReferences.isEmpty }
            guard !providers.isEmpty else { continue }
            let kind = entry.scope.hasPrefix("listener.") ? "listener" : "cluster"
            registry.registerComputed("\(entry.scope).\(entry.factory).ssl_context_update_by_sds", kind: .counter,
                                      family: "\(kind).\(entry.factory).ssl_context_update_by_sds", labels: [entry.label]) {
                providers.reduce(0) { $0 + $1.loads.value }
            }
        }
        let watched = tlsProviders.filter { $0.secretReferences.contains { $0.file != nil } }
        if !watched.isEmpty {
            secretWatcher = SecretWatcher(providers: watched, registry: registry, eventLoop: group.next())
        }
    }

    public var adminAddress: SocketAddress? { adminChannel?.localAddress }

    /// Every TLS context of the config, unloaded (filter chains, then clusters).
    var tlsProviders: [TLSContextProvider] {
        listenerSet.withLockedValue { $0.active.flatMap(\.tlsProviders) } + snapshot.clusters.compactMap { $0.tls?.provider }
    }

    /// Reads every certificate, key and CA file the config names, so a missing or mismatched file stops the
    /// start with an error naming it. A context whose secrets come from a control plane is built when they arrive.
    public func loadTLS() throws {
        try Self.load(tlsProviders, secrets: secretDiscovery.secrets)
    }

    /// `--mode validate`: reads every certificate, key and CA file the config names, without starting anything.
    public static func checkTLSFiles(_ bootstrap: Bootstrap) throws {
        var providers: [TLSContextProvider] = []
        for l in bootstrap.listeners {
            for chain in l.filterChains + [l.defaultFilterChain].compactMap({ $0 }) {
                if let tls = chain.tls { providers.append(TLSContextProvider(tls, listener: l, chain: chain)) }
            }
        }
        for c in bootstrap.clusters {
            if let tls = c.tls { providers.append(TLSContextProvider(tls, cluster: c)) }
        }
        try load(providers)
    }

    /// The certificate files of clusters that arrive by CDS, read as `install` reads them: a cluster that names SDS
    /// secrets, or files that cannot be read, refuses the update (at start too, so that a bad CDS file is
    /// rejected instead of stopping the proxy, as in Envoy).
    static func checkTLSFiles(ofDynamic clusters: [Cluster]) throws {
        for c in clusters {
            guard let tls = c.tls else { continue }
            try loadFiles(TLSContextProvider(tls, cluster: c), of: "cluster '\(c.name)'", from: "a cluster from CDS")
        }
    }

    /// Reads a TLS context that arrived while the proxy runs (`owner`: what it belongs to; `from`: how it came),
    /// refusing SDS files (the secret watcher only knows the files of the config it started with). One whose
    /// secrets from a control plane have not arrived is built when they do.
    private static func loadFiles(_ provider: TLSContextProvider, of owner: String, from: String,
                                  secrets: [SDSSecretReference: SecretFile.Secret] = [:]) throws {
        guard provider.secretReferences.allSatisfy({ $0.file == nil }) else {
            throw ServerError("\(owner): transport_socket names SDS files; \(from) can only use certificate files "
                + "or secrets from a control plane")
        }
        try load([provider], secrets: secrets, owner: owner)
    }

    /// Builds each context; one waiting for secrets from a control plane is left for when they arrive. Errors name
    /// `owner`, else the context's own owner.
    private static func load(_ providers: [TLSContextProvider], secrets: [SDSSecretReference: SecretFile.Secret] = [:],
                             owner: String? = nil) throws {
        for p in providers {
            do {
                try p.load(secrets: secrets)
            } catch is TLSMaterial.SecretNotReady {
                continue
            } catch {
                throw ServerError("\(owner ?? p.owner): \(error)")
            }
        }
    }

    /// The config snapshot installed last.
    var snapshot: ConfigSnapshot { installed.withLockedValue { $0 } }

    public func start() throws {
        if let snapshotError { throw snapshotError }
        secretWatcher?.prime()
        try loadTLS()
        secretWatcher?.initialLoadSucceeded()
        threadPool.start()
        let snapshot = self.snapshot
        let hosts = snapshot.clusters.map { self.hosts(for: $0.config) }
        for (i, c) in snapshot.clusters.enumerated() where c.config.type.resolvesNames && hosts[i].isEmpty {
            Log.warning("cluster has no resolved hosts", [("cluster", c.config.name)])
        }
        let registry = self.registry
        let context = self.context
        for (i, loop) in group.makeIterator().enumerated() {
            let bound = try loop.submit {
                NIOLoopBound(Worker(eventLoop: loop, index: i, registry: registry, snapshot: snapshot, hosts: hosts,
                                    server: context), eventLoop: loop)
            }.wait()
            workers.append((loop, bound))
        }
        let active = listenerSet.withLockedValue { $0.active }
        listenerCounters.created.wrappingIncrement(by: active.count * workers.count, ordering: .relaxed)
        for g in active {
            guard let slot = g.socket else {
                Log.info("virtual listener (bind_to_port: false)", [("name", g.config.name), ("address", "\(g.config.address)")])
                continue
            }
            let socket: ListenSocket
            do {
                socket = try bindSocket(slot, for: g.config, accepting: true)
            } catch {
                throw ServerError("cannot bind listener '\(g.config.name)' to \(g.config.address): \(error)")
            }
            listenerSet.withLockedValue { $0.sockets[slot] = socket }
            Log.info("listener started", [("name", g.config.name), ("address", Log.describe(socket.channel.localAddress))])
        }
        if let admin = bootstrap.admin {
            do {
                adminChannel = try AdminServer(server: self).bind(host: admin.address.address, port: admin.address.port)
            } catch {
                throw ServerError("cannot bind admin to \(admin.address): \(error)")
            }
            Log.info("admin started", [("address", Log.describe(adminChannel!.localAddress))])
        }
        for (i, info) in snapshot.clusters.enumerated() {
            try startClusterServices(info, slot: i, hosts: hosts[i])
        }
        secretWatcher?.start()
        try startDiscoveryWatchers()
        startStatsFlush()
    }

    /// A cluster's hosts now: its EDS file's, else its endpoints (names resolved).
    private func hosts(for cluster: Cluster) -> [UpstreamHost] {
        cluster.eds != nil ? endpointDiscovery.hosts(for: cluster) : ClusterManager.resolve(cluster)
    }

    /// An EDS file replaced a cluster's hosts: every worker's thread-local cluster and its health checker take
    /// them (the cluster of the installed snapshot by that name; none, when it left meanwhile).
    private func pushHosts(_ name: String, _ hosts: [UpstreamHost]) {
        guard let info = snapshot.clusters.first(where: { $0.name == name }) else { return }
        for w in workers {
            w.loop.execute { w.worker.value.threadLocal(for: info)?.replaceHosts(hosts) }
        }
        let checker = services.withLockedValue { $0?.healthCheckers[ObjectIdentifier(info)] }
        checker?.replaceHosts(hosts)
        Log.info("eds: hosts replaced", [("cluster", name), ("hosts", "\(hosts.count)")])
    }

    /// Watches the discovery files' directories: each file moved into place is read and, when accepted,
    /// installed.
    private func startDiscoveryWatchers() throws {
        try endpointDiscovery.start { [weak self] name, hosts in self?.pushHosts(name, hosts) }
        try startADS()
        startSourceStreams()
        if bootstrap.dynamicResources?.ads == nil && preInitializing.value {
            // Secrets by streams of their own only: readiness waits for them, at most Envoy's initial fetch timeout.
            releaseWhenWarm(deadline: .now() + 15)
        }
        guard let dynamicConfig else { return }
        discoveryWatchers = try dynamicConfig.watchers { [weak self] what in self?.reload(what) }
        for w in discoveryWatchers { w.start() }
    }

    /// Opens the ADS stream to the `ads_config` cluster's first host, subscribed to the types the config takes
    /// from it (CDS as a wildcard; EDS and RDS by name). Readiness waits for their first fetch.
    private func startADS() throws {
        guard let ads = bootstrap.dynamicResources?.ads else { return }
        guard let cluster = bootstrap.clusters.first(where: { $0.name == ads.clusterName }),
              let address = cluster.endpoints.first?.address else {
            throw ServerError("the ADS cluster '\(ads.clusterName)' has no address")
        }
        var types: [(typeURL: String, wildcard: Bool)] = []
        if bootstrap.dynamicResources?.clusters == .ads { types.append((DiscoveryResources.cluster, true)) }
        types.append((DiscoveryResources.clusterLoadAssignment, false))
        if dynamicConfig?.listenersFromADS ?? false { types.append((DiscoveryResources.listener, true)) }
        types.append((DiscoveryResources.routeConfiguration, false))
        types.append((DiscoveryResources.secret, false))
        let timeout = Double(bootstrap.dynamicResources?.initialFetchTimeout.nanoseconds ?? 15_000_000_000) / 1e9
        let endpointDiscovery = self.endpointDiscovery
        let dynamicConfig = self.dynamicConfig
        let client = try ADSClient(
            host: address.address, port: address.port, tls: cluster.tls, config: ads, nodeID: bootstrap.nodeID ?? "", nodeCluster: bootstrap.nodeCluster ?? "",
            types: types, initialFetchTimeout: timeout, registry: registry,
            names: { [weak self] url in
                switch url {
                case DiscoveryResources.clusterLoadAssignment: return endpointDiscovery.adsServiceNames
                case DiscoveryResources.routeConfiguration: return dynamicConfig?.adsRouteNames ?? []
                case DiscoveryResources.secret: return Set(self?.wantedSecrets(from: .ads).map(\.name) ?? [])
                default: return []
                }
            },
            apply: { [weak self] url, resources, version, versions in self?.applyADS(url, resources, version, versions) })
        adsClient = client
        endpointDiscovery.onADSNamesChanged { [weak client] in client?.refreshNames() }
        Log.info("ads: connecting", [("cluster", ads.clusterName), ("address", "\(address)"),
                                     ("tls", cluster.tls == nil ? "no" : "yes")])
        client.start { [weak self] in
            Log.info("ads: initial fetch done", [])
            self?.releaseWhenWarm(deadline: .now() + max(timeout, 0.001))
        }
    }

    /// Readiness waits, after the first fetch, for the listeners it brought to warm (their routes and secrets
    /// arrived) and for the secrets from control planes that TLS contexts name, as Envoy's init manager does, at
    /// most until `deadline` (the initial fetch timeout again).
    private func releaseWhenWarm(deadline: DispatchTime) {
        let warming = dynamicConfig?.listenerStates().warming.count ?? 0
        let missing = missingSecrets
        guard warming > 0 || !missing.isEmpty, DispatchTime.now() < deadline, !stopping.value else {
            if warming > 0 { Log.warning("ads: listeners still warming; ready without them", [("warming", "\(warming)")]) }
            if !missing.isEmpty {
                Log.warning("sds: secrets have not arrived; ready without them (their connections fail until they do)",
                            [("secrets", missing.map(\.name).joined(separator: ","))])
            }
            preInitializing.value = false
            return
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.02) { [weak self] in
            self?.releaseWhenWarm(deadline: deadline)
        }
    }

    /// Installs a response from the ADS stream; returns why it was refused (the NACK's error_detail).
    /// Blocks: never on an event loop.
    func applyADS(_ typeURL: String, _ resources: [Google_Protobuf_Any], _ versionInfo: String,
                  _ resourceVersions: [String]?) -> String? {
        guard !stopping.value else { return nil }
        defer { _ = glibcMallocTrim(0) }
        let filters = HTTPFilterRegistry.catalog
        switch typeURL {
        case DiscoveryResources.cluster:
            let decoded = Result {
                try XDSResourceDecoding.decode(resources, versionInfo: versionInfo, resourceVersions: resourceVersions,
                                               typeURL: typeURL, what: "CDS", compactDocuments: true,
                                               decode: Cluster.decode, name: \.name)
            }
            guard let dynamicConfig else { return "CDS is not configured to come from ADS" }
            let refused = dynamicConfig.applyADSClusters(decoded) { try install($0, listenerRevisions: $1) }
            // Clusters that arrived may name secrets to ask for.
            adsClient?.refreshNames()
            startSourceStreams()
            return refused
        case DiscoveryResources.routeConfiguration:
            let decoded = Result {
                try XDSResourceDecoding.decode(resources, versionInfo: versionInfo, resourceVersions: resourceVersions,
                                               typeURL: typeURL, what: "RDS",
                                               httpFilters: filters, decode: RouteConfiguration.decode, name: \.name)
            }
            return dynamicConfig?.applyADSRoutes(decoded) { try install($0, listenerRevisions: $1) }
        case DiscoveryResources.listener:
            let decoded = Result {
                try XDSResourceDecoding.decode(resources, versionInfo: versionInfo, resourceVersions: resourceVersions,
                                               typeURL: typeURL, what: "LDS",
                                               httpFilters: filters, decode: Listener.decode, name: \.name)
            }
            guard let dynamicConfig else { return "LDS is not configured to come from ADS" }
            let refused = dynamicConfig.applyADSListeners(decoded) { try install($0, listenerRevisions: $1) }
            // Listeners that arrived may name route configurations to ask for.
            adsClient?.refreshNames()
            startSourceStreams()
            return refused
        case DiscoveryResources.clusterLoadAssignment:
            let decoded = Result {
                try XDSResourceDecoding.decode(resources, versionInfo: versionInfo, resourceVersions: resourceVersions,
                                               typeURL: typeURL, what: "EDS", compactDocuments: true,
                                               decode: ClusterLoadAssignment.decode, name: \.clusterName)
            }
            return endpointDiscovery.applyADS(decoded)
        case DiscoveryResources.secret:
            return applySecrets(typeURL, resources, versionInfo, resourceVersions, from: .ads)
        default:
            return "Pilotfish does not take \(typeURL) resources"
        }
    }

    /// Reads a discovery file again and installs what it brings; a refused file leaves the config as it is.
    /// Returns the error of a refused file. Blocks: never on an event loop.
    @discardableResult
    func reload(_ what: DynamicConfig.Reload) -> String? {
        guard let dynamicConfig, !stopping.value else { return nil }
        // Decoding a large file leaves freed memory in the heap that glibc keeps; give it back once applied.
        defer { _ = glibcMallocTrim(0) }
        switch what {
        case .clusters, .listeners:
            // What arrived may name route configurations or secrets to ask for, on the ADS stream or streams of
            // their own.
            defer {
                adsClient?.refreshNames()
                startSourceStreams()
            }
            if case .clusters = what { return dynamicConfig.reloadClusters { try install($0, listenerRevisions: $1) } }
            return dynamicConfig.reloadListeners { try install($0, listenerRevisions: $1) }
        case .routes(let rds): return dynamicConfig.reloadRoutes(rds) { try install($0, listenerRevisions: $1) }
        }
    }

    /// Starts a cluster's health checker and DNS refresh, if it has them. Verdicts and new host lists go to every
    /// worker's thread-local cluster for `info`, which stops or resumes using a host.
    /// `slot`: the cluster's place in the snapshot that adds it, which spreads health checkers over the workers.
    private func startClusterServices(_ info: ClusterInfo, slot: Int, hosts: [UpstreamHost]) throws {
        let id = ObjectIdentifier(info)
        let workers = self.workers
        if let config = info.config.healthChecks.first, let hcStats = info.healthCheckStats {
            let home = workers[slot % workers.count]
            let traffic = info.traffic
            let name = info.config.name
            let checker = try home.loop.submit {
                let box = HealthCheckerBox()
                let c = ActiveHealthChecker(
                    eventLoop: home.loop, clusterName: name, config: config, hosts: hosts, stats: hcStats,
                    workerStats: home.worker.value.stats, clusterHasTraffic: { traffic.load(ordering: .relaxed) },
                    onTransition: { index, healthy in
                        guard let host = box.checker?.host(at: index) else { return }
                        Log.info(healthy ? "host passes health checks" : "host fails health checks",
                                 [("cluster", name), ("host", host.description)])
                        for w in workers {
                            w.loop.execute {
                                w.worker.value.threadLocal(for: info)?
                                    .setHealthCheck(address: host.address, passes: healthy)
                            }
                        }
                    })
                box.checker = c
                c.start()
                return c
            }.wait()
            let kept = services.withLockedValue { s -> Bool in
                s?.healthCheckers[id] = checker
                return s != nil
            }
            if !kept { checker.stop() }
        }
        if info.config.type.resolvesNames {
            let checker = services.withLockedValue { $0?.healthCheckers[id] }
            let task = try startDNSRefresh(info, initial: hosts, checker: checker)
            let kept = services.withLockedValue { s -> Bool in
                s?.dnsRefreshes[id] = task
                return s != nil
            }
            if !kept { task.cancel() }
        }
    }

    /// A cluster left the config: its health checks and DNS refreshes stop.
    private func stopClusterServices(_ info: ClusterInfo) {
        let id = ObjectIdentifier(info)
        let (checker, task) = services.withLockedValue {
            ($0?.healthCheckers.removeValue(forKey: id), $0?.dnsRefreshes.removeValue(forKey: id))
        }
        checker?.stop()
        task?.cancel()
    }

    /// Installs `next` (what CDS, RDS and LDS updates do): every worker starts its new streams on its routes and
    /// clusters, while streams already running finish on the snapshot they started with. Clusters `next` keeps
    /// with the same config keep their hosts, health and pooled connections; clusters it drops, or whose config
    /// changed, drain (idle connections close now, busy ones when their requests end) and stop their health
    /// checks and DNS refreshes; clusters it adds, or changes, get new ones. New stats (a new cluster's, a new
    /// listener's, a per-route filter config's) are registered first, and each worker makes room for them as it
    /// installs.
    ///
    /// Listeners are matched by name: one whose revision (`listenerRevisions`, "static" when absent) is the one
    /// running keeps running with the routes `next` gives it; a new or changed one gets a new generation (its TLS
    /// files read and its socket bound first, so a listener that cannot start refuses the whole update), and a
    /// changed or removed one drains for the drain time. A changed listener at the same address takes over its
    /// socket. A new cluster or listener that names SDS secrets is refused, as the secret watcher only knows the
    /// secrets of the config it started with. Returns once every worker has the snapshot; blocks, so never call
    /// it on an event loop.
    public func install(_ next: Bootstrap, listenerRevisions: [String: String] = [:]) throws {
        try installLock.withLock {
            guard !workers.isEmpty, !stopping.value else {
                throw ServerError("install: the server is not running")
            }
            let current = snapshot
            // Worked on as a copy: a refused update leaves the listeners as they were.
            var set = listenerSet.withLockedValue { $0 }
            let drained = set.drained
            set.removeDrained()
            let plan = try planListeners(next.listeners, revisions: listenerRevisions, in: &set)
            let secrets = secretDiscovery.secrets
            for g in plan.created {
                for provider in g.tlsProviders {
                    try Self.loadFiles(provider, of: "listener '\(g.config.name)'", from: "a listener added while the proxy runs",
                                       secrets: secrets)
                }
            }
            let before = Set(current.clusters.map(ObjectIdentifier.init))
            let infos = clusterManager.infos(for: next.clusters)
            let added = infos.filter { !before.contains(ObjectIdentifier($0)) }
            for info in added {
                guard let provider = info.tls?.provider else { continue }
                try Self.loadFiles(provider, of: "cluster '\(info.name)'", from: "a cluster added while the proxy runs",
                                   secrets: secrets)
            }
            let active = plan.active.map(\.generation)
            let served = Self.acceptors(active)
            let tables = plan.active.map { ConfigSnapshot.ListenerTables(chains: $0.chains, tables: $0.generation.tables) }
                + (set.draining + plan.retired).map(\.listenerTables)
            let snapshot = try ConfigSnapshot(
                version: current.version + 1, listeners: tables, clusters: infos, runtime: context.runtime,
                acceptors: served.acceptors, handoff: served.handoff)
            for l in next.listeners {
                for case .httpConnectionManager(let hcm) in ConfigSnapshot.networkChains(l).map(\.network) {
                    Self.registerRouteFilterStats(hcm.routeConfig, registry: registry)
                }
            }
            let after = Set(infos.map(ObjectIdentifier.init))
            // Only clusters the workers do not have yet need hosts.
            try endpointDiscovery.sync(next.clusters)
            // New sockets listen now and accept once the workers have the snapshot naming their listeners; nothing
            // after them throws before the workers have it.
            var bound: [Int: ListenSocket] = [:]
            for g in plan.created {
                guard let slot = g.socket, plan.toBind.contains(slot) else { continue }
                do {
                    bound[slot] = try bindSocket(slot, for: g.config, accepting: false)
                } catch {
                    for socket in bound.values { socket.channel.close(promise: nil) }
                    throw ServerError("cannot bind listener '\(g.config.name)' to \(g.config.address): \(error)")
                }
            }
            let hosts = infos.map { before.contains(ObjectIdentifier($0)) ? [] : self.hosts(for: $0.config) }
            let installs = workers.map { w in
                w.loop.submit { w.worker.value.install(snapshot, hosts: { hosts[$0.index] }) }
            }
            installed.withLockedValue { $0 = snapshot }
            clusterManager.commit(infos)
            // A removed cluster's stats leave /stats, as in Envoy; one added back shows them again.
            let names = Set(infos.map(\.name))
            registry.setHidden(Set(current.clusters.map(\.name).filter { !names.contains($0) }.map(ClusterInfo.statsOwner)),
                               shown: Set(names.map(ClusterInfo.statsOwner)))
            clusterManagerStats.count(from: current.clusters.map(\.config), to: infos.map(\.config))
            for info in current.clusters where !after.contains(ObjectIdentifier(info)) { stopClusterServices(info) }
            // Health checkers start once every worker has the cluster, so that no verdict is pushed to a worker
            // that would drop it.
            try EventLoopFuture.andAllSucceed(installs, on: group.next()).wait()
            try commitListeners(plan, set: set, bound: bound, processed: drained)
            for (i, info) in infos.enumerated() where !before.contains(ObjectIdentifier(info)) {
                try startClusterServices(info, slot: i, hosts: hosts[i])
            }
            Log.info("config snapshot installed", [("version", "\(snapshot.version)"), ("clusters", "\(infos.count)"),
                                                   ("listeners", "\(active.count)")])
        }
    }

    /// The workers have the snapshot of `plan`: new sockets start accepting, sockets no generation took over
    /// close, replaced and removed generations drain.
    /// `processed`: the drained generations `set` no longer has (others may have drained meanwhile).
    private func commitListeners(_ plan: ListenerPlan, set: ListenerSet, bound: [Int: ListenSocket],
                                 processed: Set<Int>) throws {
        var set = set
        for (g, chains) in plan.active { g.chains = chains }
        set.active = plan.active.map(\.generation)
        set.draining += plan.retired
        for (slot, socket) in bound { set.sockets[slot] = socket }
        let used = Set(set.active.compactMap(\.socket))
        var closing: [ListenSocket] = []
        for slot in Array(set.sockets.keys) where !used.contains(slot) {
            closing.append(set.sockets.removeValue(forKey: slot)!)
        }
        for g in plan.retired where g.socket.map({ !used.contains($0) }) ?? false { g.socket = nil }
        let committed = set
        listenerSet.withLockedValue { s in
            let late = s.drained.subtracting(processed)
            s = committed
            s.drained = late
        }
        for socket in bound.values { try socket.channel.setOption(ChannelOptions.autoRead, value: true).wait() }
        for socket in closing { socket.channel.close(promise: nil) }
        let removed = plan.retired.count - plan.modified
        listenerCounters.added.wrappingIncrement(by: plan.added, ordering: .relaxed)
        listenerCounters.modified.wrappingIncrement(by: plan.modified, ordering: .relaxed)
        listenerCounters.removed.wrappingIncrement(by: removed, ordering: .relaxed)
        listenerCounters.created.wrappingIncrement(by: plan.created.count * workers.count, ordering: .relaxed)
        for g in plan.created {
            Log.info("listener started", [("name", g.config.name), ("address", "\(g.config.address)"),
                                          ("generation", "\(g.tag)")])
        }
        for g in plan.retired {
            Log.info("listener draining", [("name", g.config.name), ("generation", "\(g.tag)")])
            drain(g)
        }
    }

    /// What a loopback peer is appended to `x-forwarded-for` as (Envoy's local address), looked up once.
    static let localAddress = ConnectionManagerHeaders.hostLocalAddress()

    func chainRuntime(_ l: Listener, _ chain: FilterChain, _ hostname: String, generation: Int, limits: [ConnectionLimiter],
                              table: ConfigSnapshot.ChainTable,
                              tls: TransportTLS?, httpFilters factories: [any HTTPFilterFactory]) -> ChainRuntime
    {
        let networkRBAC = chain.networkRBAC.map {
            RBACFilter($0, stats: rbacStats[$0.statsScope(connectionManagerPrefix: nil)]!, registry: registry)
        }
        switch chain.network {
        case .httpConnectionManager(let hcm):
            guard case .routes(let routeTable) = table else { preconditionFailure("chain table mismatch") }
            var headers = hcm.requestHeaders
            if hcm.addUserAgent {
                headers.userAgent = bootstrap.nodeCluster ?? ""
                headers.nodeID = bootstrap.nodeID ?? ""
            }
            if headers.useRemoteAddress { headers.localAddress = Self.localAddress }
            let router = hcm.httpFilters.last?.config as? RouterConfig
            return .http(ListenerRuntime(
                config: l, hcm: hcm, generation: generation, routeTable: routeTable, stats: httpStats[hcm.statPrefix]!,
                maxHeaderBytes: hcm.maxRequestHeadersKB * 1024, hostname: hostname, tls: tls,
                networkRBAC: networkRBAC, connectionLimits: limits, httpFilters: factories,
                filtersReadConnection: hcm.httpFilters.contains { $0.config is RBACFilterConfig },
                requestHeaders: headers, tracer: tracer(hcm, egress: l.trafficDirection == .OUTBOUND),
                startChildSpan: (router?.startChildSpan ?? false) || (hcm.tracing?.spawnUpstreamSpan ?? false)))
        case .tcpProxy(let tcp):
            guard case .tcpProxy(let proxy) = table else { preconditionFailure("chain table mismatch") }
            var runtime = TCPListenerRuntime(
                config: l, proxy: tcp, stats: tcpStats[tcp.statPrefix]!, generation: generation, tcpProxy: proxy, tls: tls)
            runtime.networkRBAC = networkRBAC
            runtime.connectionLimits = limits
            return .tcp(runtime)
        }
    }

    /// Listen-socket options shared by every listener: backlog, reuse, and the transparent-proxy options.
    ///
    /// The listen queue is `tcp_backlog_size`, else `net.core.somaxconn` as Envoy's; and a wake-up of the listener
    /// accepts up to 256 waiting connections (NIO's default is 4), so a burst of connects (a slowloris opening
    /// thousands) is taken in at once instead of overflowing the queue while other work runs between accepts.
    /// The kernel's cap on listen queues (Envoy's default `tcp_backlog_size`); 128 where it cannot be read.
    static let somaxconn: Int = {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/core/somaxconn", encoding: .utf8),
              let n = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), n > 0 else { return 128 }
        return n
    }()

    func serverBootstrap(_ listener: Listener) -> ServerBootstrap {
        let v6 = listener.address.address.contains(":")
        var b = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: Int32(listener.tcpBacklogSize ?? Self.somaxconn))
            .serverChannelOption(ChannelOptions.maxMessagesPerRead, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        if listener.transparent {
            // IP_TRANSPARENT (19) / IPV6_TRANSPARENT (75): needs CAP_NET_ADMIN.
            b = b.serverChannelOption(v6 ? .socket(SocketOptionLevel(IPPROTO_IPV6), 75) : .socket(SocketOptionLevel(IPPROTO_IP), 19), value: 1)
        }
        if listener.freebind {
            // IP_FREEBIND (15) / IPV6_FREEBIND (78).
            b = b.serverChannelOption(v6 ? .socket(SocketOptionLevel(IPPROTO_IPV6), 78) : .socket(SocketOptionLevel(IPPROTO_IP), 15), value: 1)
        }
        return b
    }

    /// Re-resolves a DNS cluster every `dns_refresh_rate` and hands changed host lists to the workers.
    private func startDNSRefresh(_ info: ClusterInfo, initial hosts: [UpstreamHost],
                                 checker: ActiveHealthChecker?) throws -> RepeatedTask {
        let loop = group.next()
        // The box must be made on its loop.
        let last = try loop.submit { NIOLoopBoundBox(hosts, eventLoop: loop) }.wait()
        let pool = threadPool
        let workers = self.workers
        let config = info.config
        return loop.scheduleRepeatedAsyncTask(initialDelay: config.dnsRefreshRate.timeAmount,
                                              delay: config.dnsRefreshRate.timeAmount) { _ in
            pool.runIfActive(eventLoop: loop) { ClusterManager.resolve(config) }.map { hosts in
                guard hosts != last.value, !hosts.isEmpty else { return }
                last.value = hosts
                Log.debug("dns hosts changed", [("cluster", config.name), ("hosts", "\(hosts.count)")])
                for w in workers {
                    w.loop.execute { w.worker.value.threadLocal(for: info)?.replaceHosts(hosts) }
                }
                checker?.replaceHosts(hosts)
            }.recover { _ in }
        }
    }

    /// Each cluster of the installed snapshot with its hosts' health flags and request counts summed over workers
    /// (admin `/clusters`). Asked of every worker on its own loop; never waits on a loop.
    func hostReports() -> EventLoopFuture<[(cluster: ClusterInfo, hosts: [HostReport])]> {
        let clusters = snapshot.clusters
        let futures = workers.map { w in
            w.loop.submit { clusters.map { w.worker.value.hostReport(cluster: $0) } }
        }
        return EventLoopFuture.whenAllSucceed(futures, on: group.next()).map { perWorker in
            var merged = perWorker.first ?? clusters.map { _ in [] }
            for part in perWorker.dropFirst() {
                for (c, hosts) in part.enumerated() {
                    for r in hosts {
                        guard let j = merged[c].firstIndex(where: { $0.host == r.host }) else { continue }
                        merged[c][j].add(r)
                    }
                }
            }
            return Array(zip(clusters, merged)).map { (cluster: $0.0, hosts: $0.1) }
        }
    }

    /// Sums every worker's stats.
    func collectStats() -> EventLoopFuture<[Int]> {
        let futures = workers.map { w in w.loop.submit { w.worker.value.stats.snapshot() } }
        let count = registry.count
        return EventLoopFuture.whenAllSucceed(futures, on: group.next()).map { snaps in
            var total = Array(repeating: 0, count: count)
            // A worker that has not installed the snapshot bringing the newest stats has fewer of them.
            for s in snaps { for i in 0..<min(count, s.count) { total[i] &+= s[i] } }
            return total
        }
    }

    func resetCounters() -> EventLoopFuture<Void> {
        let kinds = registry.kinds
        registry.dynamic.reset()
        let futures = workers.map { w in w.loop.submit { w.worker.value.stats.resetCounters(kinds) } }
        return EventLoopFuture.andAllSucceed(futures, on: group.next())
    }

    public var isDraining: Bool { stopping.value }

    /// Graceful stop: stop accepting, let in-flight requests finish within the drain time, then close
    /// everything. Idempotent.
    public func drainAndStop() {
        guard stopping.setIfFalse() else { return }
        Log.info("draining", [("drain_time_s", "\(drainTime.nanoseconds / 1_000_000_000)")])
        let loop = group.next()
        let closes = listenerSet.withLockedValue { $0.sockets.values.map { $0.channel.close() } }
        let drained = EventLoopFuture.andAllComplete(closes, on: loop).flatMap { [workers] in
            EventLoopFuture.andAllComplete(workers.map { w in w.loop.flatSubmit { w.worker.value.drain() } }, on: loop)
        }
        let deadline = loop.scheduleTask(in: drainTime) {}
        deadline.futureResult.whenSuccess { [weak self] in self?.finishStop() }
        drained.whenComplete { [weak self] _ in
            deadline.cancel()
            self?.finishStop()
        }
    }

    private let finished = NIOLockedValueBoxBool()

    private func finishStop() {
        guard finished.setIfFalse() else { return }
        let stopped = services.withLockedValue { s -> ClusterServices? in
            defer { s = nil }
            return s
        }
        if let stopped {
            for t in stopped.dnsRefreshes.values { t.cancel() }
            for hc in stopped.healthCheckers.values { hc.stop() }
        }
        secretWatcher?.stop()
        for w in discoveryWatchers { w.stop() }
        adsClient?.stop()
        stopSourceStreams()
        endpointDiscovery.stop()
        statsFlushTask?.cancel()
        let loop = group.next()
        let adminClose = adminChannel?.close() ?? loop.makeSucceededVoidFuture()
        adminClose.whenComplete { [stopPromise] _ in
            Log.info("stopped")
            stopPromise.succeed()
        }
    }

    /// Blocks until the server has stopped, then releases its threads.
    public func waitUntilStopped() throws {
        try stopPromise.futureResult.wait()
        // Every line of the streams that ended reaches its file before the process (or test) goes on.
        for w in workers {
            try? w.loop.submit {
                w.worker.value.flushAccessLogs()
                w.worker.value.releaseWaiters()
            }.wait()
        }
        AccessLogWriter.shared.flush()
        drainSpanExporters()
        if !spanExporters.isEmpty { try? tracingGroup.syncShutdownGracefully() }
        try? threadPool.syncShutdownGracefully()
        try group.syncShutdownGracefully()
    }

    /// Stops at once (tests).
    public func shutdown() throws {
        drainAndStop()
        try waitUntilStopped()
    }
}

/// Lets a health checker's transition callback find the checker it belongs to.
private final class HealthCheckerBox: @unchecked Sendable {
    weak var checker: ActiveHealthChecker?
}

/// A set-once flag.
final class NIOLockedValueBoxBool: @unchecked Sendable {
    private let box = NIOLockedValueBox(false)
    var value: Bool {
        get { box.withLockedValue { $0 } }
        set { box.withLockedValue { $0 = newValue } }
    }
    /// Sets the flag; true if this call set it.
    func setIfFalse() -> Bool { box.withLockedValue { v in if v { return false }; v = true; return true } }
}

import NIOConcurrencyHelpers

/// glibc's `malloc_trim` (malloc.h, which the Glibc module does not bring in): returns free heap memory to the
/// system.
@_silgen_name("malloc_trim")
private func glibcMallocTrim(_ pad: Int) -> Int32
