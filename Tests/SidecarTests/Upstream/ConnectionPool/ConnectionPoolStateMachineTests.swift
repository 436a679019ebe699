import NIOCore
import Testing
@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// The pool's bookkeeping driven event by event, without channels: which connection a request gets, when it
/// waits or overflows, what becomes of a released connection, and where a freed slot goes.
struct ConnectionPoolStateMachineTests {
    final class Conn: PoolableConnection {
        let poolKey: ConnectionPool.Key
        var isActive = true
        var reusable = true
        var connectedAt = NIODeadline.uptimeNanoseconds(0)
        var idleSince = NIODeadline.uptimeNanoseconds(0)
        var requests = 0
        init(_ host: UpstreamHost) { poolKey = ConnectionPool.Key(host: host.address, source: nil) }
    }

    typealias Machine = ConnectionPool.StateMachine<Conn>

    static let a = UpstreamHost(address: try! SocketAddress(ipAddress: "10.0.0.1", port: 80), hostname: "a", weight: 1)
    static let b = UpstreamHost(address: try! SocketAddress(ipAddress: "10.0.0.2", port: 80), hostname: "b", weight: 1)
    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    static func machine(maxConnections: Int = 1024, maxPending: Int = 1024,
                        options: UpstreamHTTPProtocolOptions = UpstreamHTTPProtocolOptions()) -> (Machine, ClusterResources) {
        var thresholds = CircuitBreakerThresholds.Priority.allCases.map { CircuitBreakerThresholds(priority: $0) }
        thresholds[0].maxConnections = maxConnections
        thresholds[0].maxPendingRequests = maxPending
        let resources = ClusterResources(thresholds: thresholds)
        return (Machine(resources: resources, options: options), resources)
    }

    /// A request that opened its own connection, now connected and holding it.
    static func connected(_ m: inout Machine, _ host: UpstreamHost, at now: NIODeadline = t0) -> Conn {
        guard case .connect = m.requestQueued(host: host, source: .any, priority: .DEFAULT) else {
            Issue.record("expected a new connection")
            return Conn(host)
        }
        let c = Conn(host)
        m.connectionEstablished(c, now: now)
        m.requestLeftQueue(priority: .DEFAULT)
        return c
    }

    static func isPark(_ a: Machine.ReleaseAction) -> Bool {
        if case .park = a { return true }
        return false
    }

    static func closeReason(_ a: Machine.ReleaseAction) -> Machine.CloseReason? {
        if case .close(_, let r) = a { return r }
        return nil
    }

    @Test func releasedConnectionIsReusedForItsHostOnly() {
        var (m, _) = Self.machine()
        let c = Self.connected(&m, Self.a)
        let r1 = m.connectionReleased(c, now: Self.t0)
        #expect(Self.isPark(r1))
        #expect(c.requests == 1 && c.idleSince == Self.t0)
        guard case .connect = m.requestQueued(host: Self.b, source: .any, priority: .DEFAULT) else {
            Issue.record("host b must not get host a's connection")
            return
        }
        guard case .useIdle(let reused) = m.requestQueued(host: Self.a, source: .any, priority: .DEFAULT) else {
            Issue.record("host a's idle connection was not reused")
            return
        }
        #expect(reused === c)
        #expect(m.idleCount == 0)
    }

    @Test func idleConnectionThatClosedIsSkipped() {
        var (m, _) = Self.machine()
        let c = Self.connected(&m, Self.a)
        _ = m.connectionReleased(c, now: Self.t0)
        c.isActive = false
        guard case .connect = m.requestQueued(host: Self.a, source: .any, priority: .DEFAULT) else {
            Issue.record("a closed idle connection was handed out")
            return
        }
        #expect(m.idleCount == 0)
    }

    @Test func atMaxConnectionsARequestWaitsAndGetsTheNextReleasedConnectionToItsHost() {
        var (m, _) = Self.machine(maxConnections: 1)
        let c = Self.connected(&m, Self.a)
        guard case .wait(let id) = m.requestQueued(host: Self.a, source: .any, priority: .DEFAULT) else {
            Issue.record("expected to wait")
            return
        }
        guard case .handOver(let given, let waiter) = m.connectionReleased(c, now: Self.t0) else {
            Issue.record("the released connection did not go to the waiting request")
            return
        }
        #expect(given === c && waiter == id)
        #expect(m.waitingCount == 0 && m.idleCount == 0)
    }

    @Test func pastMaxPendingRequestsARequestOverflowsUntilOneLeavesTheQueue() {
        var (m, _) = Self.machine(maxConnections: 1, maxPending: 1)
        guard case .connect = m.requestQueued(host: Self.a, source: .any, priority: .DEFAULT) else {
            Issue.record("expected a new connection")
            return
        }
        guard case .overflow = m.requestQueued(host: Self.a, source: .any, priority: .DEFAULT) else {
            Issue.record("expected overflow while the first request is pending")
            return
        }
        m.requestLeftQueue(priority: .DEFAULT)
        guard case .wait = m.requestQueued(host: Self.a, source: .any, priority: .DEFAULT) else {
            Issue.record("expected to wait for the only connection")
            return
        }
    }

    /// auto_config: a connection opened for a request came back HTTP/2 and left for the HTTP/2 pool. Its slot is
    /// freed at once and goes to the oldest waiter, which keeps its need for HTTP/1.1 (an upgrade).
    @Test func aConnectionThatLeftForHTTP2FreesItsSlotForTheNextWaiter() {
        var (m, resources) = Self.machine(maxConnections: 1)
        guard case .connect = m.requestQueued(host: Self.a, source: .any, priority: .DEFAULT) else {
            Issue.record("expected a new connection")
            return
        }
        guard case .wait(let id) = m.requestQueued(host: Self.a, source: .any, priority: .DEFAULT, http1Only: true)
        else {
            Issue.record("expected to wait at max_connections")
            return
        }
        #expect(!resources.tryAcquire(.connections, .DEFAULT))
        guard case .connect(let w) = m.connectionLeftForHTTP2(priority: .DEFAULT) else {
            Issue.record("the slot of the connection that went to HTTP/2 went nowhere")
            return
        }
        #expect(w.id == id && w.http1Only)
        #expect(m.waitingCount == 0 && m.idleCount == 0)
        // The waiter's connection holds the one slot again.
        #expect(!resources.tryAcquire(.connections, .DEFAULT))
        guard case .none = m.connectionLeftForHTTP2(priority: .DEFAULT) else {
            Issue.record("no waiter left, yet a connection was asked for")
            return
        }
        #expect(resources.tryAcquire(.connections, .DEFAULT))
    }

    @Test func aClosedConnectionsSlotGoesToTheOldestWaiterWhateverItsHost() {
        var (m, _) = Self.machine(maxConnections: 1)
        let c = Self.connected(&m, Self.a)
        guard case .wait(let first) = m.requestQueued(host: Self.b, source: .any, priority: .DEFAULT),
              case .wait = m.requestQueued(host: Self.b, source: .any, priority: .DEFAULT)
        else {
            Issue.record("expected to wait")
            return
        }
        guard case .connect(let w) = m.connectionClosed(c, priority: .DEFAULT) else {
            Issue.record("the freed slot went nowhere")
            return
        }
        #expect(w.id == first && w.host == Self.b)
        #expect(m.waitingCount == 1)
        #expect(m.perHost[Self.a.address]?.active == 0 && m.perHost[Self.a.address]?.total == 1)
        // The first waiter's connection fails: the slot goes on to the second waiter.
        guard case .connect(let next) = m.connectionFailed(host: Self.b.address, priority: .DEFAULT) else {
            Issue.record("the failed connection's slot went nowhere")
            return
        }
        #expect(next.id == first + 1)
        #expect(m.waitingCount == 0)
    }

    @Test func aFailedConnectFreesItsSlotAndCountsForItsHost() {
        var (m, _) = Self.machine(maxConnections: 1)
        guard case .connect = m.requestQueued(host: Self.a, source: .any, priority: .DEFAULT),
              case .wait(let id) = m.requestQueued(host: Self.b, source: .any, priority: .DEFAULT)
        else {
            Issue.record("expected connect then wait")
            return
        }
        guard case .connect(let w) = m.connectionFailed(host: Self.a.address, priority: .DEFAULT) else {
            Issue.record("the failed connection's slot went nowhere")
            return
        }
        #expect(w.id == id)
        // A failed attempt is a connection in the host's cx_total too, as Envoy counts it.
        #expect(m.perHost[Self.a.address]?.connectFail == 1 && m.perHost[Self.a.address]?.total == 1)
    }

    @Test func aCancelledWaiterIsNotServed() {
        var (m, _) = Self.machine(maxConnections: 1)
        let c = Self.connected(&m, Self.a)
        guard case .wait(let id) = m.requestQueued(host: Self.a, source: .any, priority: .DEFAULT) else {
            Issue.record("expected to wait")
            return
        }
        let cancelled = m.waiterCancelled(id)
        let again = m.waiterCancelled(id)
        #expect(cancelled && !again)
        let released = m.connectionReleased(c, now: Self.t0)
        #expect(Self.isPark(released))
    }

    @Test func releaseClosesWhatCannotBeReused() {
        var options = UpstreamHTTPProtocolOptions()
        options.maxRequestsPerConnection = 2
        options.maxConnectionDuration = .seconds(10)
        var (m, _) = Self.machine(options: options)

        let unclean = Self.connected(&m, Self.a)
        unclean.reusable = false
        let r2 = m.connectionReleased(unclean, now: Self.t0)
        #expect(Self.closeReason(r2) == .notReusable)

        let used = Self.connected(&m, Self.a)
        let r3 = m.connectionReleased(used, now: Self.t0)
        #expect(Self.isPark(r3))
        _ = m.requestQueued(host: Self.a, source: .any, priority: .DEFAULT)
        let r4 = m.connectionReleased(used, now: Self.t0)
        #expect(Self.closeReason(r4) == .maxRequestsReached)

        let old = Self.connected(&m, Self.a)
        let r5 = m.connectionReleased(old, now: Self.t0 + .seconds(10))
        #expect(Self.closeReason(r5) == .maxDurationReached)
        #expect(m.idleCount == 0)
    }

    @Test func idleSweepClosesIdleAndOldConnections() {
        var options = UpstreamHTTPProtocolOptions()
        options.idleTimeout = .seconds(60)
        options.maxConnectionDuration = .seconds(600)
        var (m, _) = Self.machine(options: options)
        let fresh = Self.connected(&m, Self.a, at: Self.t0 + .seconds(590))
        let idle = Self.connected(&m, Self.a, at: Self.t0 + .seconds(500))
        let old = Self.connected(&m, Self.b, at: Self.t0)
        _ = m.connectionReleased(fresh, now: Self.t0 + .seconds(595))
        _ = m.connectionReleased(idle, now: Self.t0 + .seconds(530))
        _ = m.connectionReleased(old, now: Self.t0 + .seconds(595))

        let closing = m.idleSweepDue(now: Self.t0 + .seconds(600), unusedSince: .distantPast)
        #expect(closing.count == 2)
        #expect(closing.contains { $0.0 === idle && $0.1 == .idleTimeout })
        #expect(closing.contains { $0.0 === old && $0.1 == .maxDurationReached })
        #expect(m.idleCount == 1)

        // ORIGINAL_DST's cleanup_interval: unused since the cutoff is enough.
        let cleaned = m.idleSweepDue(now: Self.t0 + .seconds(600), unusedSince: Self.t0 + .seconds(599))
        #expect(cleaned.count == 1 && cleaned[0].0 === fresh && cleaned[0].1 == .idleTimeout)
    }

    @Test func aRemovedClusterClosesIdleConnectionsNowAndBusyOnesWhenReleased() {
        var (m, _) = Self.machine(maxConnections: 2)
        let idle = Self.connected(&m, Self.a)
        let busy = Self.connected(&m, Self.a)
        _ = m.connectionReleased(idle, now: Self.t0)
        guard case .wait = m.requestQueued(host: Self.b, source: .any, priority: .DEFAULT) else {
            Issue.record("expected to wait")
            return
        }
        let closing = m.clusterRemoved()
        #expect(closing.count == 1 && closing[0] === idle)
        #expect(m.isDraining)
        let r6 = m.connectionReleased(busy, now: Self.t0)
        #expect(Self.closeReason(r6) == .clusterRemoved)
        // A request queued before still gets a slot: its stream runs on a snapshot that has the cluster.
        guard case .connect = m.connectionClosed(busy, priority: .DEFAULT) else {
            Issue.record("the queued request lost its place")
            return
        }
    }

    @Test func breakerCountsGoBackWhenConnectionsClose() {
        var (m, resources) = Self.machine(maxConnections: 1)
        let c = Self.connected(&m, Self.a)
        #expect(resources.remaining(.connections, .DEFAULT) == 0)
        let freed = m.connectionClosed(c, priority: .DEFAULT)
        #expect(freed.isNone)
        #expect(resources.remaining(.connections, .DEFAULT) == 1)
        #expect(resources.remaining(.pendingRequests, .DEFAULT) == 1024)
    }
}

extension ConnectionPool.StateMachine.SlotAction {
    var isNone: Bool {
        if case .none = self { return true }
        return false
    }
}
