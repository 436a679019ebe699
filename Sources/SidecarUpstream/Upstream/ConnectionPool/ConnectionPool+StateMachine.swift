import NIOCore
import SidecarCore

/// What the pool's state machine reads and keeps on a pooled connection. The fields live on the connection so that
/// handing one out or taking it back costs no lookup.
package protocol PoolableConnection: AnyObject {
    var poolKey: ConnectionPool.Key { get }
    /// The channel is open.
    var isActive: Bool { get }
    /// The last exchange ended cleanly and the upstream did not ask to close.
    var reusable: Bool { get }
    /// When it connected (`max_connection_duration`).
    var connectedAt: NIODeadline { get set }
    /// When it last went back to the pool (`idle_timeout`, ORIGINAL_DST `cleanup_interval`).
    var idleSince: NIODeadline { get set }
    /// Requests it finished (`max_requests_per_connection`).
    var requests: Int { get set }
}

extension ConnectionPool {
    /// One worker's bookkeeping of its connections to one cluster, as events in and actions out: which idle
    /// connection a request gets, when a request must open a connection, wait for one or overflow, what becomes of
    /// a connection a request is done with, and which request a freed connection slot goes to. No channels,
    /// futures or stats: `ConnectionPool` runs the actions and counts. The circuit-breaker counts it takes and gives
    /// back (`max_pending_requests`, `max_connections`) are the cluster's, shared by every worker.
    ///
    ///     requestQueued ──idle connection for the key──────────────────────────▶ .useIdle
    ///          │ none
    ///          ├──max_pending_requests reached──────────────────────────────────▶ .overflow
    ///          ├──room under max_connections────────────────────────────────────▶ .connect
    ///          └──else: queued──────────────────────────────────────────────────▶ .wait(id)
    ///                 │  ▲                                                         (waiterCancelled: .failWaiter)
    ///                 │  └── connectionReleased, same key ──▶ .handOver(to: id)
    ///                 └───── connectionClosed / connectionFailed frees a slot ──▶ .connect(waiter: id, …)
    ///
    ///     connectionReleased ──not reusable, closed, draining, used up, too old──▶ .close(reason)
    ///                        ──a request waits for its key────────────────────────▶ .handOver
    ///                        ──else───────────────────────────────────────────────▶ .park (idle)
    ///     idleSweepDue ──idle past idle_timeout / cleanup_interval, or too old──▶ close each
    ///
    ///     running ──clusterRemoved──▶ draining (idle connections close; every release closes)
    package struct StateMachine<Connection: PoolableConnection> {
        private enum State {
            case running
            /// The cluster left the config: nothing goes back idle.
            case draining
        }

        /// A request queued for a connection to its host.
        package struct Waiter {
            package var id: Int
            package var host: UpstreamHost
            package var source: UpstreamSource
            package var priority: CircuitBreakerThresholds.Priority
            package var key: Key
            /// The request must have HTTP/1.1 (see `ConnectionPool.acquire`), so must the connection opened for it.
            package var http1Only: Bool
        }

        package enum RequestAction {
            case useIdle(Connection)
            /// Open a connection for this request (the request counts as pending until it has one).
            case connect
            /// `max_connections` reached: the request waits (pending) for a connection to its host or for room.
            case wait(id: Int)
            /// `max_pending_requests` reached (upstream_rq_pending_overflow).
            case overflow
        }

        package enum CloseReason {
            case notReusable
            case clusterRemoved
            case maxRequestsReached
            /// `upstream_cx_max_duration_reached`.
            case maxDurationReached
            /// `upstream_cx_idle_timeout`.
            case idleTimeout
        }

        package enum ReleaseAction {
            case close(Connection, CloseReason)
            /// Give the connection to a queued request for the same host.
            case handOver(Connection, waiter: Int)
            /// It went back to the idle list.
            case park
        }

        package enum SlotAction {
            case none
            /// A connection slot went to the oldest queued request: open its connection.
            case connect(waiter: Waiter)
        }

        private var state = State.running
        private var idle: [Key: [Connection]] = [:]
        /// Requests waiting for a connection to their host, oldest first.
        private var waiters: [Waiter] = []
        private var nextWaiterID = 0
        /// Connection counts per host, for admin `/clusters`.
        package private(set) var perHost: [SocketAddress: HostConnections] = [:]
        private let resources: ClusterResources
        private let options: UpstreamHTTPProtocolOptions

        package init(resources: ClusterResources, options: UpstreamHTTPProtocolOptions) {
            self.resources = resources
            self.options = options
        }

        package var isDraining: Bool {
            switch state {
            case .running: return false
            case .draining: return true
            }
        }

        package var waitingCount: Int { waiters.count }
        package var idleCount: Int { idle.values.reduce(0) { $0 + $1.count } }

        // MARK: Requests

        /// A request wants a connection to `host`: an idle one, a new one, a place in the queue, or none.
        package mutating func requestQueued(host: UpstreamHost, source: UpstreamSource,
                                    priority: CircuitBreakerThresholds.Priority, http1Only: Bool = false) -> RequestAction {
            let key = Key(host: host.address, source: source.poolKey)
            // Popped in place; an emptied list stays (with its capacity) for the connection's return, which would
            // otherwise allocate a new array per request. `idleSweepDue` drops empty lists.
            while let conn = idle[key]?.popLast() {
                if conn.isActive { return .useIdle(conn) }
            }
            guard resources.tryAcquire(.pendingRequests, priority) else { return .overflow }
            if resources.tryAcquire(.connections, priority) { return .connect }
            nextWaiterID += 1
            waiters.append(Waiter(id: nextWaiterID, host: host, source: source, priority: priority, key: key,
                                  http1Only: http1Only))
            return .wait(id: nextWaiterID)
        }

        /// A pending request got its connection or gave up (its `max_pending_requests` count goes back).
        package func requestLeftQueue(priority: CircuitBreakerThresholds.Priority) {
            resources.release(.pendingRequests, priority)
        }

        /// A queued request left before getting a connection (timeout, client gone). False: it was not queued.
        package mutating func waiterCancelled(_ id: Int) -> Bool {
            guard let i = waiters.firstIndex(where: { $0.id == id }) else { return false }
            waiters.remove(at: i)
            return true
        }

        // MARK: Connections

        /// A connection opened for a request is up.
        package mutating func connectionEstablished(_ conn: Connection, now: NIODeadline) {
            perHost[conn.poolKey.host, default: HostConnections()].active += 1
            perHost[conn.poolKey.host, default: HostConnections()].total += 1
            conn.connectedAt = now
        }

        /// A connection could not be opened: its slot goes to the oldest queued request, if the breaker lets it.
        package mutating func connectionFailed(host: SocketAddress, priority: CircuitBreakerThresholds.Priority) -> SlotAction {
            // Envoy counts a connection in the host's cx_total from the attempt, as upstream_cx_total.
            perHost[host, default: HostConnections()].connectFail += 1
            perHost[host, default: HostConnections()].total += 1
            resources.release(.connections, priority)
            return slotFreed()
        }

        /// A connection opened for a request settled on HTTP/2 (ALPN) and went to the HTTP/2 pool, which counts it
        /// from now on: its slot here is freed.
        package mutating func connectionLeftForHTTP2(priority: CircuitBreakerThresholds.Priority) -> SlotAction {
            resources.release(.connections, priority)
            return slotFreed()
        }

        /// A connection that was up closed (either side): it leaves the idle list and its slot is freed.
        package mutating func connectionClosed(_ conn: Connection, priority: CircuitBreakerThresholds.Priority) -> SlotAction {
            perHost[conn.poolKey.host, default: HostConnections()].active -= 1
            resources.release(.connections, priority)
            if var list = idle[conn.poolKey], let i = list.firstIndex(where: { $0 === conn }) {
                list.remove(at: i)
                idle[conn.poolKey] = list.isEmpty ? nil : list
            }
            return slotFreed()
        }

        private mutating func slotFreed() -> SlotAction {
            guard let w = waiters.first, resources.tryAcquire(.connections, w.priority) else { return .none }
            waiters.removeFirst()
            return .connect(waiter: w)
        }

        /// A request is done with `conn`: it is closed (not reusable, closed, draining, used up or too old), goes to
        /// a queued request for the same host, or back to the idle list.
        package mutating func connectionReleased(_ conn: Connection, now: NIODeadline) -> ReleaseAction {
            conn.requests += 1
            guard conn.reusable, conn.isActive else { return .close(conn, .notReusable) }
            switch state {
            case .running: break
            case .draining: return .close(conn, .clusterRemoved)
            }
            if let max = options.maxRequestsPerConnection, conn.requests >= max {
                return .close(conn, .maxRequestsReached)
            }
            if let maxAge = options.maxConnectionDuration, now - conn.connectedAt >= maxAge.timeAmount {
                return .close(conn, .maxDurationReached)
            }
            if let i = waiters.firstIndex(where: { $0.key == conn.poolKey }) {
                return .handOver(conn, waiter: waiters.remove(at: i).id)
            }
            conn.idleSince = now
            idle[conn.poolKey, default: []].append(conn)
            return .park
        }

        // MARK: Idle connections

        /// The periodic sweep: idle connections unused since `cutoff` (ORIGINAL_DST `cleanup_interval`, else
        /// `idle_timeout`) and those past `max_connection_duration` leave the idle list, to be closed.
        package mutating func idleSweepDue(now: NIODeadline, unusedSince cutoff: NIODeadline) -> [(Connection, CloseReason)] {
            let idleCutoff = options.idleTimeout.isZero ? cutoff : max(cutoff, now - options.idleTimeout.timeAmount)
            let ageCutoff = options.maxConnectionDuration.map { now - $0.timeAmount }
            var closing: [(Connection, CloseReason)] = []
            for (key, list) in idle {
                var keep: [Connection] = []
                for c in list {
                    if let ageCutoff, c.connectedAt <= ageCutoff {
                        closing.append((c, .maxDurationReached))
                    } else if c.idleSince < idleCutoff {
                        closing.append((c, .idleTimeout))
                    } else {
                        keep.append(c)
                    }
                }
                idle[key] = keep.isEmpty ? nil : keep
            }
            return closing
        }

        /// Every idle connection leaves the idle list, to be closed (the worker drains).
        package mutating func idleClosingRequested() -> [Connection] {
            let all = idle.values.flatMap { $0 }
            idle.removeAll()
            return all
        }

        /// The cluster left the config: idle connections are to be closed now, busy ones when released. Queued
        /// requests keep their place (their streams run on a snapshot that has the cluster).
        package mutating func clusterRemoved() -> [Connection] {
            state = .draining
            return idleClosingRequested()
        }
    }
}
