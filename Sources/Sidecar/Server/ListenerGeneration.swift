import NIOCore
import SidecarCore
import SidecarUpstream

/// One version of a listener as the server runs it: its filter chains made ready (stats registered, filter
/// factories, TLS contexts and connection limiters made), the numbers of the tables its chains use in every config
/// snapshot, and the socket it takes connections from. An LDS update that changes a listener makes a new
/// generation and drains the old one; an update that leaves it as it was keeps it (and its connections).
final class ListenerGeneration: @unchecked Sendable {
    /// Unique for the server's life: connections carry it, so a drain finds the generation's own.
    let tag: Int
    let config: Listener
    /// The LDS resource it was made from, as delivered ("static" for the bootstrap's listeners).
    let revision: String
    let runtime: ChainedListenerRuntime
    /// Each chain's table number (its route table or tcp_proxy cluster), in chain order.
    let tables: [ConfigSnapshot.ChainTable]
    /// Its chains as the config installed last gives them (routes from RDS filled in): what snapshots make its
    /// tables from. Changed under the server's install lock.
    var chains: [FilterChain]
    /// The slot of the socket it takes connections from (`ListenerSet.sockets`); nil when it binds none
    /// (`bind_to_port: false`). Changed under the server's install lock.
    var socket: Int?
    /// Its filter chains' TLS contexts.
    let tlsProviders: [TLSContextProvider]

    init(tag: Int, config: Listener, revision: String, runtime: ChainedListenerRuntime,
         tables: [ConfigSnapshot.ChainTable], tlsProviders: [TLSContextProvider]) {
        self.tag = tag
        self.config = config
        self.revision = revision
        self.runtime = runtime
        self.tables = tables
        self.chains = ConfigSnapshot.networkChains(config)
        self.tlsProviders = tlsProviders
    }

    var listenerTables: ConfigSnapshot.ListenerTables { .init(chains: chains, tables: tables) }
}

/// A bound listen socket. Generations of a listener at the same address hand it on, so the connections waiting in
/// its accept queue during an update are taken by the new generation instead of being reset.
struct ListenSocket {
    let address: SocketAddressConfig
    let options: Options
    let channel: Channel

    /// What is fixed when the socket is made.
    struct Options: Equatable {
        var transparent: Bool
        var freebind: Bool
        var backlog: Int?

        init(_ l: Listener) {
            transparent = l.transparent
            freebind = l.freebind
            backlog = l.tcpBacklogSize
        }
    }
}

/// Table numbers: a number given back is reused (by a later generation, once the one that had it drained).
struct TableNumbers {
    private var next = 0
    private var free: [Int] = []

    mutating func take() -> Int {
        if let n = free.popLast() { return n }
        next += 1
        return next - 1
    }

    mutating func give(_ n: Int) { free.append(n) }
}

/// The server's listeners. Changed under its install lock only; admin and stats read it.
struct ListenerSet {
    /// In config order: the static listeners, then LDS's.
    var active: [ListenerGeneration] = []
    /// Replaced or removed generations whose connections have not all ended.
    var draining: [ListenerGeneration] = []
    /// Tags of draining generations whose connections all ended: taken out at the next install.
    var drained: Set<Int> = []
    /// Bound sockets by slot.
    var sockets: [Int: ListenSocket] = [:]
    var nextSocket = 0
    var nextTag = 1
    var routeNumbers = TableNumbers()
    var tcpNumbers = TableNumbers()

    /// Drained generations leave; their table numbers are free again.
    mutating func removeDrained() {
        guard !drained.isEmpty else { return }
        for g in draining where drained.contains(g.tag) {
            for table in g.tables {
                switch table {
                case .routes(let n): routeNumbers.give(n)
                case .tcpProxy(let n): tcpNumbers.give(n)
                }
            }
        }
        draining.removeAll { drained.contains($0.tag) }
        drained = []
    }
}
