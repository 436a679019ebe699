import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

// MARK: - Pure parts

@Suite struct HostHealthCheckStateTests {
    @Test func aNewHostIsPendingAndUnhealthyAndItsFirstSuccessMakesItHealthyAtOnce() {
        var s = HostHealthCheckState(healthyThreshold: 3, unhealthyThreshold: 3)
        #expect(s.pendingFirstCheck)
        #expect(!s.isHealthy)
        #expect(s.checkSucceeded() == .becameHealthy)
        #expect(s.isHealthy)
        #expect(!s.pendingFirstCheck)
        #expect(s.checkSucceeded() == nil)
    }

    @Test func aFailedFirstCheckEndsPendingAsATransitionToUnhealthy() {
        var s = HostHealthCheckState(healthyThreshold: 2, unhealthyThreshold: 2)
        #expect(s.checkFailed() == .becameUnhealthy)
        #expect(!s.pendingFirstCheck)
        #expect(!s.isHealthy)
        #expect(s.checkFailed() == nil)
        // After pending, healthy_threshold applies: one success is not enough.
        #expect(s.checkSucceeded() == nil)
        #expect(s.checkSucceeded() == .becameHealthy)
    }

    @Test func networkFailuresNeedUnhealthyThresholdConsecutiveResults() {
        var s = HostHealthCheckState(healthyThreshold: 1, unhealthyThreshold: 3)
        _ = s.checkSucceeded()
        #expect(s.checkFailed(.network) == nil)
        #expect(s.checkFailed(.networkTimeout) == nil)
        #expect(s.isHealthy)
        #expect(s.checkFailed(.network) == .becameUnhealthy)
        #expect(!s.isHealthy)
        #expect(s.checkFailed(.network) == nil)
    }

    @Test func aSuccessInAFailureStreakStartsTheCountAgain() {
        var s = HostHealthCheckState(healthyThreshold: 1, unhealthyThreshold: 3)
        _ = s.checkSucceeded()
        #expect(s.checkFailed() == nil)
        #expect(s.checkFailed() == nil)
        #expect(s.checkSucceeded() == nil)
        #expect(s.checkFailed() == nil)
        #expect(s.checkFailed() == nil)
        #expect(s.isHealthy)
        #expect(s.checkFailed() == .becameUnhealthy)
    }

    @Test func aFailureInASuccessStreakStartsTheCountAgain() {
        var s = HostHealthCheckState(healthyThreshold: 3, unhealthyThreshold: 1)
        _ = s.checkFailed()
        #expect(s.checkSucceeded() == nil)
        #expect(s.checkSucceeded() == nil)
        #expect(s.checkFailed() == nil)
        #expect(s.checkSucceeded() == nil)
        #expect(s.checkSucceeded() == nil)
        #expect(!s.isHealthy)
        #expect(s.checkSucceeded() == .becameHealthy)
    }

    @Test func anAnswerThatSaysUnhealthyNeedsNoThresholdUnlessRetriable() {
        var s = HostHealthCheckState(healthyThreshold: 1, unhealthyThreshold: 5)
        _ = s.checkSucceeded()
        #expect(s.checkFailed(.active, retriable: true) == nil)
        #expect(s.isHealthy)
        #expect(s.checkFailed(.active) == .becameUnhealthy)

        var p = HostHealthCheckState(healthyThreshold: 1, unhealthyThreshold: 5)
        _ = p.checkSucceeded()
        #expect(p.checkFailed(.passive) == .becameUnhealthy)
        #expect(p.excludedViaImmediateFailure)
    }

    @Test func theImmediateFailHeaderExcludesTheHostUntilItIsHealthyAgain() {
        var s = HostHealthCheckState(healthyThreshold: 2, unhealthyThreshold: 2)
        _ = s.checkSucceeded()
        #expect(s.checkFailed(.active, immediateFailHeader: true) == .becameUnhealthy)
        #expect(s.excludedViaImmediateFailure)
        #expect(s.checkSucceeded() == nil)
        #expect(s.excludedViaImmediateFailure)
        #expect(s.checkSucceeded() == .becameHealthy)
        #expect(!s.excludedViaImmediateFailure)
    }

    @Test func degradedFollowsTheLastPassingAnswerWithoutBeingATransition() {
        var s = HostHealthCheckState(healthyThreshold: 1, unhealthyThreshold: 1)
        #expect(s.checkSucceeded(degraded: true) == .becameHealthy)
        #expect(s.isDegraded)
        #expect(s.checkSucceeded(degraded: false) == nil)
        #expect(!s.isDegraded)
    }
}

@Suite struct HealthCheckScheduleTests {
    static func config(
        interval: Int64 = 1000, unhealthy: Int64? = nil, noTraffic: Int64 = 60_000, jitter: Int64 = 0,
        initialJitter: Int64 = 0
    ) -> HealthCheckConfig {
        HealthCheckConfig(
            kind: .tcp(.init(send: [], receive: [])), timeout: .seconds(1), interval: .milliseconds(interval),
            intervalJitter: .milliseconds(jitter), initialJitter: .milliseconds(initialJitter),
            unhealthyThreshold: 2, healthyThreshold: 2, noTrafficInterval: .milliseconds(noTraffic),
            unhealthyInterval: unhealthy.map { .milliseconds($0) })
    }

    static let ms: Int64 = 1_000_000

    /// The next delay in nanoseconds, with the cluster carrying traffic unless told.
    static func next(
        _ c: HealthCheckConfig, healthy: Bool = true, traffic: Bool = true, first: Bool = false,
        _ r: inout ScriptedRandom
    ) -> Int64 {
        HealthCheckSchedule.next(config: c, hostHealthy: healthy, clusterHasTraffic: traffic, first: first, random: &r)
    }

    @Test func anIdleClusterIsCheckedAtTheNoTrafficIntervalWhateverTheHostsHealth() {
        var r = ScriptedRandom([7])
        let c = Self.config(interval: 100, unhealthy: 30, noTraffic: 5000)
        #expect(Self.next(c, healthy: true, traffic: false, &r) == 5000 * Self.ms)
        #expect(Self.next(c, healthy: false, traffic: false, &r) == 5000 * Self.ms)
        // no_traffic_healthy_interval, when set, follows a passing check.
        var quick = c
        quick.noTrafficHealthyInterval = .milliseconds(400)
        #expect(Self.next(quick, healthy: true, traffic: false, &r) == 400 * Self.ms)
        #expect(Self.next(quick, healthy: false, traffic: false, &r) == 5000 * Self.ms)
        #expect(Self.next(quick, healthy: true, traffic: true, &r) == 100 * Self.ms)
    }

    @Test func aClusterWithTrafficUsesIntervalOrUnhealthyInterval() {
        var r = ScriptedRandom([7])
        let c = Self.config(interval: 100, unhealthy: 30)
        #expect(Self.next(c, healthy: true, &r) == 100 * Self.ms)
        #expect(Self.next(c, healthy: false, &r) == 30 * Self.ms)
        // unhealthy_interval defaults to interval.
        #expect(Self.next(Self.config(interval: 100), healthy: false, &r) == 100 * Self.ms)
    }

    @Test func intervalJitterAddsLessThanTheJitter() {
        let c = Self.config(interval: 100, jitter: 20)
        let jitter = UInt64(20 * Self.ms)
        var r = ScriptedRandom([0, jitter - 1, jitter, jitter + 5, UInt64.max])
        let seen = (0..<5).map { _ in Self.next(c, &r) }
        let expected = [
            100 * Self.ms, 120 * Self.ms - 1, 100 * Self.ms, 100 * Self.ms + 5,
            100 * Self.ms + Int64(UInt64.max % jitter),
        ]
        #expect(seen == expected)
        #expect(seen.allSatisfy { $0 >= 100 * Self.ms && $0 < 120 * Self.ms })
    }

    @Test func theFirstCheckRunsAtOnceOrWithinTheInitialJitter() {
        var r = ScriptedRandom([250 * UInt64(Self.ms), 0])
        #expect(Self.next(Self.config(), healthy: false, traffic: false, first: true, &r) == 0)
        let c = Self.config(initialJitter: 100)
        #expect(Self.next(c, healthy: false, traffic: false, first: true, &r) == 50 * Self.ms)
        // A zero draw still waits the 1 ms floor.
        #expect(Self.next(c, healthy: false, traffic: false, first: true, &r) == 1 * Self.ms)
    }

    @Test func aZeroIntervalIsRaisedToOneMillisecond() {
        var r = ScriptedRandom([0])
        #expect(Self.next(Self.config(interval: 0), &r) == Self.ms)
    }
}

@Suite struct HealthCheckVerdictTests {
    static func http(_ ranges: [Range<Int>]? = nil) -> HealthCheckConfig.HTTP {
        var h = HealthCheckConfig.HTTP(path: "/healthz")
        if let ranges { h.expectedStatuses = ranges }
        return h
    }

    @Test func onlyTwoHundredPassesByDefaultAndA503Fails() {
        #expect(HealthCheckVerdict.http(status: 200, config: Self.http()))
        for status in [201, 204, 301, 404, 500, 503] {
            #expect(!HealthCheckVerdict.http(status: status, config: Self.http()))
        }
    }

    @Test func expectedStatusesAreHalfOpenRanges() {
        let c = Self.http([200..<300, 404..<405])
        #expect(HealthCheckVerdict.http(status: 200, config: c))
        #expect(HealthCheckVerdict.http(status: 299, config: c))
        #expect(!HealthCheckVerdict.http(status: 300, config: c))
        #expect(HealthCheckVerdict.http(status: 404, config: c))
        #expect(!HealthCheckVerdict.http(status: 405, config: c))
    }

    @Test func tcpReceiveBlocksMustAppearInOrderWithoutOverlapping() {
        func tcp(_ blocks: [String]) -> HealthCheckConfig.TCP {
            .init(send: [], receive: blocks.map { Array($0.utf8) })
        }
        let got = Array("+OK ready\r\nversion 7\r\n".utf8)
        #expect(HealthCheckVerdict.tcp(received: got, config: tcp(["+OK", "version"])))
        #expect(!HealthCheckVerdict.tcp(received: got, config: tcp(["version", "+OK"])))
        #expect(HealthCheckVerdict.tcp(received: Array("abcabc".utf8), config: tcp(["abc", "abc"])))
        #expect(!HealthCheckVerdict.tcp(received: Array("abc".utf8), config: tcp(["abc", "abc"])))
        #expect(!HealthCheckVerdict.tcp(received: Array("ping".utf8), config: tcp(["pin", "ing"])))
        #expect(!HealthCheckVerdict.tcp(received: Array("po".utf8), config: tcp(["pong"])))
        #expect(HealthCheckVerdict.tcp(received: [], config: tcp([])))
    }
}

// MARK: - The runtime against loopback servers

@Suite(.serialized) struct ActiveHealthCheckerTests {
    static func httpConfig(
        reuse: Bool = true, healthy: Int = 2, unhealthy: Int = 3, timeoutMs: Int64 = 1000
    ) -> HealthCheckConfig {
        HealthCheckConfig(
            kind: .http(.init(path: "/healthz")), timeout: .milliseconds(timeoutMs), interval: .milliseconds(50),
            unhealthyThreshold: unhealthy, healthyThreshold: healthy, reuseConnection: reuse)
    }

    static func tcpConfig(send: String, receive: [String], timeoutMs: Int64 = 1000) -> HealthCheckConfig {
        HealthCheckConfig(
            kind: .tcp(.init(send: Array(send.utf8), receive: receive.map { Array($0.utf8) })),
            timeout: .milliseconds(timeoutMs), interval: .milliseconds(50), unhealthyThreshold: 2,
            healthyThreshold: 2)
    }

    static func host(port: Int) throws -> UpstreamHost {
        UpstreamHost(address: try SocketAddress(ipAddress: "127.0.0.1", port: port), hostname: "127.0.0.1", weight: 1)
    }

    @Test func anHTTPHostTurnsHealthyThenAt503UnhealthyAtOnceThenHealthyAfterTheThreshold() throws {
        let server = try HealthEndpoint()
        defer { server.stop() }
        let h = try CheckerHarness(
            config: Self.httpConfig(healthy: 2, unhealthy: 3), hosts: [Self.host(port: server.port)])
        defer { h.shutdown() }
        h.checker.start()

        #expect(eventually(timeout: 5) { h.transitions.count == 1 })
        #expect(h.transitions.first?.healthy == true)
        #expect(h.checker.healthy == [true])
        #expect(h.stat("healthy") == 1)

        server.setStatus(503)
        #expect(eventually(timeout: 5) { h.transitions.count == 2 })
        let down = h.transitions[1]
        #expect(down.healthy == false)
        // One 503 was enough although unhealthy_threshold is 3: the host answered "no".
        #expect(down.stats["failure"] == 1)
        #expect(down.stats["network_failure"] == 0)
        #expect(h.checker.healthy == [false])

        server.setStatus(200)
        #expect(eventually(timeout: 5) { h.transitions.count == 3 })
        let up = h.transitions[2]
        #expect(up.healthy == true)
        // healthy_threshold 2: two passing checks after the failures.
        #expect(up.stats["success"] == down.stats["success"]! + 2)
        #expect(h.stat("healthy") == 1)
        #expect(h.resultsMatchAttempts())
        #expect(h.stat("network_failure") == 0)

        // Envoy's request, all checks on one kept-alive connection.
        let head = try #require(server.heads.first)
        #expect(head.method == "GET")
        #expect(head.uri == "/healthz")
        #expect(head.headers.map { $0.name.lowercased() } == ["host", "user-agent"])
        #expect(head.header("host") == "svc")
        #expect(head.header("user-agent") == "Envoy/HC")
        #expect(server.acceptedConnections == 1)
    }

    @Test func theConfiguredHostHeaderIsSent() throws {
        let server = try HealthEndpoint()
        defer { server.stop() }
        var config = Self.httpConfig()
        config.kind = .http(.init(host: "health.internal", path: "/ready"))
        let h = try CheckerHarness(config: config, hosts: [Self.host(port: server.port)])
        defer { h.shutdown() }
        h.checker.start()
        #expect(eventually(timeout: 5) { !server.heads.isEmpty })
        #expect(server.heads.first?.header("host") == "health.internal")
        #expect(server.heads.first?.uri == "/ready")
    }

    @Test func connectionCloseFromTheHostIsNoFailureAndTheNextCheckReconnects() throws {
        let server = try HealthEndpoint()
        defer { server.stop() }
        server.setCloseAfterAnswer(true)
        let h = try CheckerHarness(config: Self.httpConfig(), hosts: [Self.host(port: server.port)])
        defer { h.shutdown() }
        h.checker.start()
        #expect(eventually(timeout: 5) { server.requestCount >= 3 })
        #expect(h.stat("failure") == 0)
        #expect(h.checker.healthy == [true])
        #expect(server.acceptedConnections >= 3)
        #expect(server.acceptedConnections >= server.requestCount)
        #expect(h.resultsMatchAttempts())
    }

    @Test func withoutReuseConnectionEveryCheckOpensItsOwnConnection() throws {
        let server = try HealthEndpoint()
        defer { server.stop() }
        let h = try CheckerHarness(config: Self.httpConfig(reuse: false), hosts: [Self.host(port: server.port)])
        defer { h.shutdown() }
        h.checker.start()
        #expect(eventually(timeout: 5) { server.requestCount >= 3 && server.closedConnections >= 2 })
        #expect(server.acceptedConnections >= server.requestCount)
        #expect(h.stat("failure") == 0)
        #expect(h.resultsMatchAttempts())
    }

    @Test func aClosedPortFailsEveryCheckAsANetworkFailure() throws {
        let port = try closedLocalPort()
        let h = try CheckerHarness(config: Self.httpConfig(), hosts: [Self.host(port: port)])
        defer { h.shutdown() }
        h.checker.start()
        #expect(eventually(timeout: 5) { h.stat("attempt") >= 3 && h.stat("failure") >= 3 })
        #expect(h.stat("success") == 0)
        #expect(h.stat("network_failure") == h.stat("failure"))
        #expect(h.resultsMatchAttempts())
        #expect(h.stat("healthy") == 0)
        #expect(h.checker.healthy == [false])
        // Only the end of "pending" is reported; the host never was healthy.
        #expect(h.transitions.map(\.healthy) == [false])
        #expect(h.checker.hostFlags.first?.pendingActiveHC == false)
    }

    @Test func aHostThatNeverAnswersTimesOutAndItsConnectionIsClosed() throws {
        let server = try HealthEndpoint()
        defer { server.stop() }
        server.setSilent(true)
        let h = try CheckerHarness(config: Self.httpConfig(timeoutMs: 100), hosts: [Self.host(port: server.port)])
        defer { h.shutdown() }
        h.checker.start()
        #expect(eventually(timeout: 5) { h.stat("network_failure") >= 2 && server.closedConnections >= 2 })
        #expect(h.stat("success") == 0)
        #expect(h.stat("failure") == h.stat("network_failure"))
        #expect(h.checker.healthy == [false])
        #expect(h.resultsMatchAttempts())
    }

    @Test func theImmediateFailHeaderMarksTheHostExcludedUntilItPassesAgain() throws {
        let server = try HealthEndpoint()
        defer { server.stop() }
        let h = try CheckerHarness(config: Self.httpConfig(healthy: 1), hosts: [Self.host(port: server.port)])
        defer { h.shutdown() }
        h.checker.start()
        #expect(eventually(timeout: 5) { h.checker.healthy == [true] })
        server.setStatus(503, immediateFail: true)
        #expect(eventually(timeout: 5) { h.checker.hostFlags.first?.excludedViaImmediateHCFail == true })
        #expect(h.checker.healthy == [false])
        server.setStatus(200)
        #expect(eventually(timeout: 5) { h.checker.healthy == [true] })
        #expect(h.checker.hostFlags.first?.excludedViaImmediateHCFail == false)
    }

    @Test func aPassiveImmediateFailureMakesAHealthyHostUnhealthyAtOnce() throws {
        let server = try HealthEndpoint()
        defer { server.stop() }
        let h = try CheckerHarness(config: Self.httpConfig(unhealthy: 5), hosts: [Self.host(port: server.port)])
        defer { h.shutdown() }
        h.checker.start()
        #expect(eventually(timeout: 5) { h.checker.healthy == [true] })
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: server.port)
        h.checker.reportImmediateHealthCheckFailure(address: address)
        #expect(eventually(timeout: 5) { h.transitions.count >= 2 })
        #expect(h.transitions[1].healthy == false)
        #expect(h.transitions[1].stats["passive_failure"] == 1)
        #expect(h.transitions[1].stats["network_failure"] == 0)
        // The host still answers 200, so the next checks bring it back.
        #expect(eventually(timeout: 5) { h.transitions.count >= 3 })
        #expect(h.transitions[2].healthy == true)
    }

    @Test func aTCPHostPassesWhenTheReceiveBlocksComeBackInOrder() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let config = Self.tcpConfig(send: "ping-pong", receive: ["ping", "pong"])
        let h = try CheckerHarness(config: config, hosts: [Self.host(port: echo.port)])
        defer { h.shutdown() }
        h.checker.start()
        #expect(eventually(timeout: 5) { h.checker.healthy == [true] && h.stat("success") >= 3 })
        #expect(h.stat("failure") == 0)
        #expect(h.stat("healthy") == 1)
        #expect(h.resultsMatchAttempts())
    }

    @Test func aTCPHostWhoseAnswerNeverMatchesTimesOut() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let config = Self.tcpConfig(send: "ping-pong", receive: ["pong", "ping"], timeoutMs: 100)
        let h = try CheckerHarness(config: config, hosts: [Self.host(port: echo.port)])
        defer { h.shutdown() }
        h.checker.start()
        #expect(eventually(timeout: 5) { h.stat("network_failure") >= 2 })
        #expect(h.stat("success") == 0)
        #expect(h.checker.healthy == [false])
        #expect(h.resultsMatchAttempts())
    }

    @Test func aTCPConnectOnlyCheckPassesOnConnectAndFailsOnAClosedPort() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let closed = try closedLocalPort()
        let config = Self.tcpConfig(send: "", receive: [])
        let h = try CheckerHarness(config: config, hosts: [Self.host(port: echo.port), Self.host(port: closed)])
        defer { h.shutdown() }
        h.checker.start()
        #expect(eventually(timeout: 5) { h.stat("success") >= 2 && h.stat("network_failure") >= 2 })
        #expect(h.checker.healthy == [true, false])
        #expect(h.stat("healthy") == 1)
        #expect(h.resultsMatchAttempts())
    }

    @Test func replacingHostsKeepsTheStateOfHostsThatStayAndDropsTheGaugeOfHostsThatGo() throws {
        let a = try HealthEndpoint()
        defer { a.stop() }
        let c = try HealthEndpoint()
        defer { c.stop() }
        let closed = try closedLocalPort()
        let hostA = try Self.host(port: a.port)
        let h = try CheckerHarness(config: Self.httpConfig(), hosts: [hostA, Self.host(port: closed)])
        defer { h.shutdown() }
        h.checker.start()
        #expect(eventually(timeout: 5) { h.checker.hostFlags.map(\.pendingActiveHC) == [false, false] })
        #expect(h.checker.healthy == [true, false])
        let transitionsBefore = h.transitions.count

        // A moves to index 1 and stays healthy; C is new and pending; the closed port is gone.
        h.replaceHosts([try Self.host(port: c.port), hostA])
        // A kept its state at once; C's first check may already have answered (it runs right away), so C is
        // shown pending by its transition to healthy below rather than by reading it here.
        #expect(h.checker.healthy[1] == true)
        #expect(eventually(timeout: 5) { h.checker.healthy == [true, true] })
        #expect(h.transitions.dropFirst(transitionsBefore).map(\.host) == [0])
        #expect(h.stat("healthy") == 2)

        // Dropping a healthy host takes it out of the gauge.
        h.replaceHosts([hostA])
        #expect(h.checker.healthy == [true])
        #expect(h.stat("healthy") == 1)
    }
}

// MARK: - Helpers

/// One checker on its own event loop, with its stats and a record of every transition it reported.
final class CheckerHarness: Sendable {
    struct Transition: Sendable {
        var host: Int
        var healthy: Bool
        /// The health_check stats at the moment of the transition, by short name.
        var stats: [String: Int]
    }

    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let registry = StatsRegistry()
    let checker: ActiveHealthChecker
    private let workerStats: NIOLoopBound<WorkerStats>
    private let recorded = NIOLockedValueBox<[Transition]>([])
    private let slots: [String: Int]

    static let statNames = [
        "attempt", "success", "failure", "network_failure", "passive_failure", "verify_cluster", "healthy", "degraded",
    ]

    init(config: HealthCheckConfig, hosts: [UpstreamHost], hasTraffic: Bool = true) throws {
        let loop = group.next()
        let registry = self.registry
        let hc = HealthCheckStats(cluster: "svc", registry: registry)
        var slots: [String: Int] = [:]
        for name in Self.statNames {
            slots[name] = registry.names.firstIndex(of: "cluster.svc.health_check.\(name)")
        }
        self.slots = slots
        let frozenSlots = slots
        let recorded = self.recorded
        let made = try loop.submit {
            let stats = WorkerStats(registry: registry)
            let checker = ActiveHealthChecker(
                eventLoop: loop, clusterName: "svc", config: config, hosts: hosts, stats: hc, workerStats: stats,
                clusterHasTraffic: { hasTraffic },
                onTransition: { index, healthy in
                    let values = stats.snapshot()
                    let byName = frozenSlots.mapValues { values[$0] }
                    recorded.withLockedValue { $0.append(Transition(host: index, healthy: healthy, stats: byName)) }
                })
            return (checker, NIOLoopBound(stats, eventLoop: loop))
        }.wait()
        checker = made.0
        workerStats = made.1
    }

    var transitions: [Transition] { recorded.withLockedValue { $0 } }

    /// `cluster.svc.health_check.<name>`, read on the checker's loop.
    func stat(_ name: String) -> Int {
        let slot = slots[name]!
        let stats = workerStats
        return (try? checker.eventLoop.submit { stats.value.snapshot()[slot] }.wait()) ?? -1
    }

    /// Every health_check stat at one instant, by short name.
    func stats() -> [String: Int] {
        let stats = workerStats
        let slots = self.slots
        return
            (try? checker.eventLoop.submit { () -> [String: Int] in
                let values = stats.value.snapshot()
                return slots.mapValues { values[$0] }
            }.wait()) ?? [:]
    }

    /// Each check ends exactly once: results never outnumber attempts, and at most one check is in flight.
    func resultsMatchAttempts() -> Bool {
        let s = stats()
        let results = s["success"]! + s["failure"]! - s["passive_failure"]!
        return results <= s["attempt"]! && s["attempt"]! - results <= 1
    }

    /// Replaces the hosts and waits until the checker has taken them.
    func replaceHosts(_ hosts: [UpstreamHost]) {
        let checker = self.checker
        try? checker.eventLoop.submit { checker.replaceHosts(hosts) }.wait()
    }

    func shutdown() {
        let checker = self.checker
        try? checker.eventLoop.submit { checker.stop() }.wait()
        try? group.syncShutdownGracefully()
    }
}

/// A loopback HTTP/1.1 health endpoint whose answer the test switches: status, `connection: close`, the
/// immediate-fail header, or no answer at all.
final class HealthEndpoint: Sendable {
    struct State: Sendable {
        var status = 200
        var immediateFail = false
        var closeAfterAnswer = false
        var silent = false
        var accepted = 0
        var closed = 0
        var heads: [TestBackend.RecordedHead] = []
    }

    let port: Int
    private let state = NIOLockedValueBox(State())
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel: Channel

    init() throws {
        let state = self.state
        channel = try ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    state.withLockedValue { $0.accepted += 1 }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(state: state))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        port = channel.localAddress?.port ?? 0
    }

    func setStatus(_ status: Int, immediateFail: Bool = false) {
        state.withLockedValue {
            $0.status = status
            $0.immediateFail = immediateFail
        }
    }
    func setCloseAfterAnswer(_ on: Bool) { state.withLockedValue { $0.closeAfterAnswer = on } }
    func setSilent(_ on: Bool) { state.withLockedValue { $0.silent = on } }

    var heads: [TestBackend.RecordedHead] { state.withLockedValue { $0.heads } }
    var requestCount: Int { state.withLockedValue { $0.heads.count } }
    var acceptedConnections: Int { state.withLockedValue { $0.accepted } }
    var closedConnections: Int { state.withLockedValue { $0.closed } }

    func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        private let state: NIOLockedValueBox<State>

        init(state: NIOLockedValueBox<State>) { self.state = state }

        func channelInactive(context: ChannelHandlerContext) {
            state.withLockedValue { $0.closed += 1 }
            context.fireChannelInactive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                let recorded = TestBackend.RecordedHead(
                    method: head.method.rawValue, uri: head.uri, headers: head.headers.map { ($0.name, $0.value) })
                state.withLockedValue { $0.heads.append(recorded) }
            case .body:
                break
            case .end:
                let now = state.withLockedValue { $0 }
                if now.silent { return }
                var headers = HTTPHeaders()
                headers.add(name: "content-length", value: "0")
                if now.immediateFail { headers.add(name: "x-envoy-immediate-health-check-fail", value: "true") }
                if now.closeAfterAnswer { headers.add(name: "connection", value: "close") }
                let head = HTTPResponseHead(
                    version: .http1_1, status: HTTPResponseStatus(statusCode: now.status), headers: headers)
                context.write(wrapOutboundOut(.head(head)), promise: nil)
                let close = now.closeAfterAnswer
                context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                    if close { context.close(promise: nil) }
                }
            }
        }
    }
}
