import Foundation
import NIOCore
import NIOPosix
import SidecarCore
import SidecarUpstream

/// The listener manager: listeners made into generations, bound, handed their sockets on when LDS changes them,
/// and drained when replaced or removed (see `ListenerGeneration`).
extension SidecarServer {
    /// What an install does to the listeners.
    struct ListenerPlan {
        /// The generations that serve once it is installed, in config order, each with its chains as `next`
        /// gives them.
        var active: [(generation: ListenerGeneration, chains: [FilterChain])] = []
        /// New generations (their TLS files are read and their sockets bound before anything changes).
        var created: [ListenerGeneration] = []
        /// Generations replaced or removed: they drain.
        var retired: [ListenerGeneration] = []
        /// Slots of the sockets the new generations bind.
        var toBind: [Int] = []
        var added = 0
        var modified = 0
    }

    /// Sorts `listeners` into kept, new and retired generations. A listener whose revision is the one running keeps
    /// its generation; a new one, or a changed one, gets a new generation, which takes over the socket of the one it
    /// replaces when the address and socket options are the same. Throws, changing nothing the workers see, when
    /// two listeners would bind one address.
    func planListeners(_ listeners: [Listener], revisions: [String: String], in set: inout ListenerSet) throws
        -> ListenerPlan
    {
        var plan = ListenerPlan()
        var running = Dictionary(set.active.map { ($0.config.name, $0) }, uniquingKeysWith: { a, _ in a })
        var names = Set<String>()
        for l in listeners {
            guard names.insert(l.name).inserted else { throw ServerError("listener '\(l.name)' is named twice") }
            let revision = revisions[l.name] ?? "static"
            if let old = running[l.name], old.revision == revision {
                // Only its routes may change (RDS): a listener without a revision of its own (a static one) that
                // differs otherwise is not a listener LDS manages.
                let chains = ConfigSnapshot.networkChains(l)
                guard l.address == old.config.address, ConfigSnapshot.shape(of: [l]) == ConfigSnapshot.shape(of: [old.config]) else {
                    throw ServerError("listener '\(l.name)' is static: its address and filter chains cannot change")
                }
                plan.active.append((old, chains))
                continue
            }
            let generation = makeGeneration(l, revision: revision, in: &set)
            plan.created.append(generation)
            plan.active.append((generation, generation.chains))
            if let old = running.removeValue(forKey: l.name) {
                plan.retired.append(old)
                plan.modified += 1
            } else {
                plan.added += 1
            }
        }
        plan.retired += set.active.filter { !names.contains($0.config.name) }
        let createdTags = Set(plan.created.map(\.tag))
        // Port 0 asks for any free port: such listeners never clash, and one hands its socket only to the next
        // generation of the same name.
        var bound: [SocketAddressConfig: String] = [:]
        for (g, _) in plan.active where !createdTags.contains(g.tag) && g.socket != nil && g.config.address.port != 0 {
            bound[g.config.address] = g.config.name
        }
        var handedOn = Set<Int>()
        for g in plan.created where g.config.bindToPort {
            let address = g.config.address
            if let owner = bound[address] {
                throw ServerError("listener '\(g.config.name)': address \(address) is taken by listener '\(owner)'")
            }
            if address.port != 0 { bound[address] = g.config.name }
            let prior = plan.retired.filter { $0.config.name == g.config.name || address.port != 0 }
                .compactMap(\.socket).first { set.sockets[$0]?.address == address }
            if let slot = prior, !handedOn.contains(slot) {
                guard set.sockets[slot]!.options == ListenSocket.Options(g.config) else {
                    throw ServerError("listener '\(g.config.name)': an update cannot change transparent, freebind or "
                        + "tcp_backlog_size of the socket at \(address); remove the listener, then add it again")
                }
                handedOn.insert(slot)
                g.socket = slot
            } else {
                g.socket = set.nextSocket
                set.nextSocket += 1
                plan.toBind.append(g.socket!)
            }
        }
        return plan
    }

    /// A generation of `l`: the stats its chains count registered, its HTTP filter factories, TLS contexts
    /// (not loaded) and connection limiters made, its tables numbered. The workers make room for new stats when
    /// they install the snapshot that brings it.
    func makeGeneration(_ l: Listener, revision: String, in set: inout ListenerSet) -> ListenerGeneration {
        let tag = set.nextTag
        set.nextTag += 1
        if listenerStats[l.address] == nil { listenerStats[l.address] = ListenerStats(address: l.address, registry: registry) }
        makeSpanExporters(for: [l])
        var tables: [ConfigSnapshot.ChainTable] = []
        var chains: [ChainRuntime] = []
        var providers: [TLSContextProvider] = []
        for chain in ConfigSnapshot.networkChains(l) {
            let limiters = chain.connectionLimits.map(ConnectionLimiter.init)
            ConnectionLimiter.registerStats(limiters, registry: registry)
            for scope in chain.networkRBAC.map({ $0.statsScope(connectionManagerPrefix: nil) }) where rbacStats[scope] == nil {
                rbacStats[scope] = RBACStats(scope, registry: registry)
            }
            for rbac in chain.networkRBAC { rbac.registerStats(registry) }
            var factories: [any HTTPFilterFactory] = []
            switch chain.network {
            case .httpConnectionManager(let h):
                if httpStats[h.statPrefix] == nil { httpStats[h.statPrefix] = HTTPStats(prefix: h.statPrefix, registry: registry) }
                factories = h.httpFilters.map {
                    $0.filterConfig.makeFactory(HTTPFilterBuildContext(
                        registry: registry, statPrefix: h.statPrefix, filterName: $0.name, server: context))
                }
                Self.registerRouteFilterStats(h.routeConfig, registry: registry)
                tables.append(.routes(set.routeNumbers.take()))
            case .tcpProxy(let t):
                if tcpStats[t.statPrefix] == nil { tcpStats[t.statPrefix] = TCPProxyStats(prefix: t.statPrefix, registry: registry) }
                tables.append(.tcpProxy(set.tcpNumbers.take()))
            }
            var tls: TransportTLS?
            if let config = chain.tls {
                let name = "\(l.address.address)_\(l.address.port)"
                let stats = listenerTLSStats[l.address] ?? TLSStats(
                    scope: "listener.\(name)", familyPrefix: "listener", label: ("envoy_listener_address", name),
                    registry: registry)
                listenerTLSStats[l.address] = stats
                let provider = TLSContextProvider(config, listener: l, chain: chain)
                providers.append(provider)
                tls = TransportTLS(provider: provider, stats: stats)
            }
            chains.append(chainRuntime(l, chain, Self.hostname, generation: tag, limits: limiters,
                                       table: tables.last!, tls: tls, httpFilters: factories))
        }
        let runtime = ChainedListenerRuntime(
            tag: tag, config: l,
            selector: FilterChainSelector(chains: l.filterChains.map(\.match), hasDefault: l.defaultFilterChain != nil),
            chains: chains, stats: listenerStats[l.address]!)
        return ListenerGeneration(tag: tag, config: l, revision: revision, runtime: runtime, tables: tables,
                                  tlsProviders: providers)
    }

    /// Per-route filter configs with counters of their own (local_ratelimit) register them.
    static func registerRouteFilterStats(_ rc: RouteConfiguration, registry: StatsRegistry) {
        let maps = [rc.typedPerFilterConfig] + rc.virtualHosts.flatMap {
            [$0.typedPerFilterConfig] + $0.routes.map(\.typedPerFilterConfig)
        }
        for map in maps {
            for (_, entry) in map.sorted(by: { $0.key < $1.key }) {
                (entry.config as? StartupRegistering)?.registerStats(registry)
            }
        }
    }

    static let hostname = ProcessInfo.processInfo.hostName

    /// The listeners a snapshot serves: each bound socket's generation, and every active listener by address for
    /// `use_original_dst` hand-offs.
    static func acceptors(_ active: [ListenerGeneration])
        -> (acceptors: [Int: ChainedListenerRuntime], handoff: [SocketAddressConfig: ChainedListenerRuntime])
    {
        var acceptors: [Int: ChainedListenerRuntime] = [:]
        var handoff: [SocketAddressConfig: ChainedListenerRuntime] = [:]
        for g in active {
            if let slot = g.socket { acceptors[slot] = g.runtime }
            handoff[g.config.address] = g.runtime
        }
        return (acceptors, handoff)
    }

    /// Binds the socket `slot` for `listener`: each connection it accepts goes to the generation the worker's
    /// snapshot names for the slot. `accepting: false` binds (and listens) without accepting yet: connections wait
    /// in the queue until the snapshot naming the slot's generation is installed.
    func bindSocket(_ slot: Int, for listener: Listener, accepting: Bool) throws -> ListenSocket {
        let workers = self.workers
        let globalLimit = globalConnectionLimit
        let channel = try serverBootstrap(listener)
            .serverChannelOption(ChannelOptions.autoRead, value: accepting)
            .childChannelOption(ChannelOptions.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let w = workers.first(where: { $0.loop === channel.eventLoop }) else {
                        throw ServerError("no worker for event loop")
                    }
                    let worker = w.worker.value
                    guard let runtime = worker.current.config.acceptors[slot] else {
                        throw ServerError("no listener takes the connections of socket \(slot)")
                    }
                    try Self.accept(channel, runtime: runtime, worker: worker,
                                    globalLimit: runtime.config.ignoreGlobalConnLimit ? nil : globalLimit)
                }
            }
            .bind(host: listener.address.address, port: listener.address.port)
            .wait()
        return ListenSocket(address: listener.address, options: ListenSocket.Options(listener), channel: channel)
    }

    /// Sets up an accepted connection for `runtime`'s listener: chain selection when it needs it, else its one
    /// chain.
    private static func accept(_ channel: Channel, runtime: ChainedListenerRuntime, worker: Worker,
                               globalLimit: GlobalConnectionLimit?) throws {
        if let globalLimit, !globalLimit.admit(channel) {
            worker.stats.inc(runtime.stats.globalCxOverflow)
            return
        }
        let config = runtime.config
        let limit = config.perConnectionBufferLimitBytes
        let options = channel.syncOptions
        try options?.setOption(ChannelOptions.writeBufferWaterMark, value: .init(low: limit / 2, high: limit))
        if config.needsChainSelection {
            try channel.pipeline.syncOperations.addHandler(FilterChainDispatcher(listener: runtime, worker: worker))
            return
        }
        // NIOSSL turns a peer's close_notify into inputClosed and our output close into close_notify when the
        // channel allows half-closure, so TLS streams half-close like plaintext ones.
        if case .tcp = runtime.chains[0] { try options?.setOption(ChannelOptions.allowRemoteHalfClosure, value: true) }
        // A chained listener counts in its FilterChainDispatcher; a listener of one chain counts here.
        worker.stats.inc(runtime.stats.cxTotal)
        try ChainInstaller.install(runtime.chains[0], on: channel, worker: worker, originalDestination: nil,
                                   serverName: nil)
    }

    /// A replaced or removed generation drains: its connections finish what they have in flight and close; at
    /// the drain time's end what is left closes. Once none is left it is marked drained (the next install
    /// frees its table numbers).
    func drain(_ generation: ListenerGeneration) {
        let workers = self.workers
        let loop = group.next()
        let tag = generation.tag
        let drains = workers.map { w in w.loop.flatSubmit { w.worker.value.drainListener(tag) } }
        let deadline = loop.scheduleTask(in: drainTime) {
            for w in workers { w.loop.execute { w.worker.value.closeListener(tag) } }
        }
        let name = generation.config.name
        EventLoopFuture.andAllComplete(drains, on: loop).whenComplete { [weak self] _ in
            deadline.cancel()
            self?.listenerSet.withLockedValue { _ = $0.drained.insert(tag) }
            Log.info("listener drained", [("name", name), ("generation", "\(tag)")])
        }
    }

    /// The active listeners, for admin `/listeners`: name and address (the bound one, else the configured one).
    var listenerTable: [(name: String, address: String)] {
        listenerSet.withLockedValue { set in
            set.active.map { g in
                let bound = g.socket.flatMap { set.sockets[$0]?.channel.localAddress }
                return (g.config.name, bound.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" }
                    ?? "\(g.config.address.address):\(g.config.address.port)")
            }
        }
    }

    /// Addresses the bound listeners are bound to, in config order (useful with port 0).
    public var listenerAddresses: [SocketAddress] {
        listenerSet.withLockedValue { set in
            set.active.compactMap { $0.socket.flatMap { set.sockets[$0]?.channel.localAddress } }
        }
    }

    /// Envoy's listener manager stats.
    func registerListenerManagerStats() {
        let set = listenerSet
        let counters = listenerCounters
        let dynamic = dynamicConfig
        for (name, counter) in [("listener_added", counters.added), ("listener_modified", counters.modified),
                                ("listener_removed", counters.removed), ("listener_create_success", counters.created)] {
            registry.registerComputed("listener_manager.\(name)", kind: .counter) { counter.load(ordering: .relaxed) }
        }
        registry.registerComputed("listener_manager.total_listeners_active") { set.withLockedValue { $0.active.count } }
        registry.registerComputed("listener_manager.total_listeners_draining") {
            set.withLockedValue { s in s.draining.filter { !s.drained.contains($0.tag) }.count }
        }
        registry.registerComputed("listener_manager.total_listeners_warming") {
            dynamic?.listenerStates().warming.count ?? 0
        }
    }
}
