import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// Outlier detection as Envoy 1.40's `DetectorImpl` does it (source/common/upstream/outlier_detection_impl.cc),
/// driven with scripted time and chance.
@Suite struct OutlierDetectorTests {
    typealias Event = OutlierDetector.Event

    static func seconds(_ s: Double) -> Int64 { Int64((s * 1_000_000_000).rounded()) }

    /// A detector with a scripted random source; `ScriptedRandom([0])` enforces every ejection whose
    /// enforcing_* is above 0 and draws no jitter.
    struct Harness {
        var detector: OutlierDetector
        var random: ScriptedRandom

        init(hosts: Int, random: [UInt64] = [0], _ configure: (inout OutlierDetectionConfig) -> Void = { _ in }) {
            var config = OutlierDetectionConfig()
            configure(&config)
            detector = OutlierDetector(config: config, hostCount: hosts)
            self.random = ScriptedRandom(random)
        }

        @discardableResult
        mutating func record(_ host: Int, _ result: OutlierDetector.Result, times: Int = 1, at now: Int64 = 0)
            -> [Event]
        {
            var events: [Event] = []
            for _ in 0..<times {
                events += detector.record(host: host, result, now: now, random: &random)
            }
            return events
        }

        @discardableResult
        mutating func tick(at seconds: Double) -> [Event] {
            detector.intervalElapsed(now: OutlierDetectorTests.seconds(seconds), random: &random)
        }

        /// `total` results on `host`, `failures` of them `failure`, alternating while both kinds are left so
        /// that no consecutive detector fires unless failures are the majority.
        mutating func traffic(
            _ host: Int, total: Int, failures: Int, failure: OutlierDetector.Result = .httpStatus(500),
            success: OutlierDetector.Result = .httpStatus(200)
        ) {
            var failuresLeft = failures
            var successesLeft = total - failures
            for i in 0..<total {
                if failuresLeft > 0 && (i % 2 == 1 || successesLeft == 0) {
                    failuresLeft -= 1
                    record(host, failure)
                } else {
                    successesLeft -= 1
                    record(host, success)
                }
            }
        }
    }

    // MARK: Consecutive errors

    @Test func fiveConsecutive5xxEjectWithDefaults() {
        var h = Harness(hosts: 10)
        #expect(h.record(0, .httpStatus(500), times: 4).isEmpty)
        #expect(!h.detector.isEjected(0))
        #expect(h.record(0, .httpStatus(500)) == [Event(host: 0, kind: .consecutive5xx, enforced: true)])
        #expect(h.detector.isEjected(0))
        #expect(h.detector.ejectedCount == 1)
        #expect(h.detector.numEjections(0) == 1)
    }

    @Test func aSuccessInBetweenStartsTheRunAgain() {
        var h = Harness(hosts: 10)
        h.record(0, .httpStatus(500), times: 4)
        h.record(0, .httpStatus(200))
        h.record(0, .httpStatus(500), times: 4)
        // A 4xx is not a server error: it counts as a success and breaks the run too.
        h.record(0, .httpStatus(404))
        #expect(h.record(0, .httpStatus(500), times: 4).isEmpty)
        #expect(!h.detector.isEjected(0))
        #expect(h.record(0, .httpStatus(500)).map(\.kind) == [.consecutive5xx])
    }

    @Test func gatewayFailureIsDetectedButNotEnforcedByDefault() {
        var h = Harness(hosts: 10) { $0.consecutive5xx = 100 }
        #expect(h.record(0, .httpStatus(502), times: 4).isEmpty)
        #expect(h.record(0, .httpStatus(504)) == [Event(host: 0, kind: .consecutiveGatewayFailure, enforced: false)])
        #expect(!h.detector.isEjected(0))
        // The detection cleared the run: five more are needed for the next one.
        #expect(h.record(0, .httpStatus(503), times: 4).isEmpty)
        #expect(h.record(0, .httpStatus(503)).map(\.kind) == [.consecutiveGatewayFailure])
    }

    @Test func aGatewayFailureCountsTowardsBothDetectorsGatewayFirst() {
        var h = Harness(hosts: 10)
        #expect(
            h.record(0, .httpStatus(503), times: 5) == [
                Event(host: 0, kind: .consecutiveGatewayFailure, enforced: false),
                Event(host: 0, kind: .consecutive5xx, enforced: true),
            ])
    }

    @Test func anotherServerErrorBreaksARunOfGatewayFailuresButNotOf5xx() {
        var h = Harness(hosts: 10) { $0.consecutive5xx = 6 }
        h.record(0, .httpStatus(502), times: 3)
        h.record(0, .httpStatus(500))
        #expect(h.record(0, .httpStatus(502)).isEmpty)
        #expect(h.record(0, .httpStatus(502)) == [Event(host: 0, kind: .consecutive5xx, enforced: true)])
    }

    @Test func enforcedGatewayEjectionLeavesNothingForThe5xxDetector() {
        var h = Harness(hosts: 10) { $0.enforcingConsecutiveGatewayFailure = 100 }
        #expect(
            h.record(0, .httpStatus(502), times: 5) == [
                Event(host: 0, kind: .consecutiveGatewayFailure, enforced: true)
            ])
        #expect(h.detector.ejectedCount == 1)
    }

    @Test func enforcementChanceIsRandomModulo100BelowEnforcing() {
        var refused = Harness(hosts: 10, random: [130]) { $0.enforcingConsecutive5xx = 30 }
        #expect(
            refused.record(0, .httpStatus(500), times: 5) == [
                Event(host: 0, kind: .consecutive5xx, enforced: false)
            ])
        #expect(!refused.detector.isEjected(0))
        var enforced = Harness(hosts: 10, random: [229]) { $0.enforcingConsecutive5xx = 30 }
        #expect(
            enforced.record(0, .httpStatus(500), times: 5) == [
                Event(host: 0, kind: .consecutive5xx, enforced: true)
            ])
        #expect(enforced.detector.isEjected(0))
    }

    @Test func localOriginFailuresCountAs503And504WithoutSplit() {
        var h = Harness(hosts: 10)
        h.record(0, .connectFailed, times: 2)
        h.record(0, .reset)
        h.record(0, .timeout)
        // A connection that came up says nothing about the request on it.
        h.record(0, .localOriginSuccess)
        #expect(
            h.record(0, .connectFailed) == [
                Event(host: 0, kind: .consecutiveGatewayFailure, enforced: false),
                Event(host: 0, kind: .consecutive5xx, enforced: true),
            ])

        // tcp_proxy's "connected, done" is a success (Envoy maps it to 200).
        var tcp = Harness(hosts: 10)
        tcp.record(1, .connectFailed, times: 4)
        tcp.record(1, .localOriginSuccessFinal)
        #expect(tcp.record(1, .connectFailed, times: 4).isEmpty)
    }

    @Test func splitKeepsLocalOriginFailuresApartFrom5xx() {
        var h = Harness(hosts: 10) {
            $0.splitExternalLocalOriginErrors = true
            $0.maxEjectionPercent = 20
        }
        // Local-origin failures neither extend nor break a run of 5xx.
        h.record(0, .httpStatus(500), times: 4)
        h.record(0, .connectFailed)
        #expect(h.record(0, .httpStatus(500)) == [Event(host: 0, kind: .consecutive5xx, enforced: true)])

        // An HTTP answer does not break a run of local-origin failures; a local-origin success does.
        h.record(1, .connectFailed, times: 4)
        h.record(1, .httpStatus(200))
        h.record(1, .localOriginSuccess)
        h.record(1, .timeout, times: 2)
        h.record(1, .reset, times: 2)
        #expect(!h.detector.isEjected(1))
        #expect(
            h.record(1, .connectFailed) == [Event(host: 1, kind: .consecutiveLocalOriginFailure, enforced: true)])
    }

    // MARK: max_ejection_percent

    @Test func tenPercentOfThreeHostsEjectsNoneByDefault() {
        // Observed on Envoy 1.40: without always_eject_one_host every detection overflows.
        var h = Harness(hosts: 3)
        #expect(
            h.record(0, .httpStatus(500), times: 5) == [
                Event(host: 0, kind: .overflow, enforced: false, overflowOf: .consecutive5xx)
            ])
        #expect(h.detector.ejectedCount == 0)
    }

    @Test func alwaysEjectOneHostLetsTheFirstThroughButNotTheSecond() {
        var h = Harness(hosts: 3) { $0.alwaysEjectOneHost = true }
        #expect(h.record(0, .httpStatus(500), times: 5).map(\.kind) == [.consecutive5xx])
        #expect(
            h.record(1, .httpStatus(500), times: 5) == [
                Event(host: 1, kind: .overflow, enforced: false, overflowOf: .consecutive5xx)
            ])
        #expect(h.detector.isEjected(0) && !h.detector.isEjected(1))
        #expect(h.detector.ejectedCount == 1)
        // The overflowed detection still cleared host 1's run.
        #expect(h.record(1, .httpStatus(500), times: 4).isEmpty)
    }

    @Test func theCapCountsTheEjectionItIsAbout() {
        var h = Harness(hosts: 10) { $0.maxEjectionPercent = 20 }
        h.record(0, .httpStatus(500), times: 5)
        h.record(1, .httpStatus(500), times: 5)
        #expect(h.record(2, .httpStatus(500), times: 5).map(\.kind) == [.overflow])
        #expect(h.detector.ejectedCount == 2)
    }

    @Test func anEjectedHostIsNotDetectedAgain() {
        var h = Harness(hosts: 10)
        h.record(0, .httpStatus(500), times: 5)
        #expect(h.record(0, .httpStatus(500), times: 20).isEmpty)
        #expect(h.detector.numEjections(0) == 1)
    }

    // MARK: Ejection time

    @Test func unejectedAtTheFirstIntervalAfterTheEjectionTime() {
        var h = Harness(hosts: 10)
        h.record(0, .httpStatus(500), times: 5, at: Self.seconds(3))
        #expect(h.tick(at: 10).isEmpty)
        #expect(h.tick(at: 20).isEmpty)
        #expect(h.tick(at: 30).isEmpty)  // 27 s of the 30 s
        #expect(h.tick(at: 40) == [Event(host: 0, kind: .unejected, enforced: true)])
        #expect(!h.detector.isEjected(0))
        #expect(h.detector.ejectedCount == 0)
    }

    @Test func unejectionStartsTheCountersAgain() {
        var h = Harness(hosts: 10)
        h.record(0, .httpStatus(500), times: 5)
        // Results keep arriving while ejected (requests in flight) and are counted.
        h.record(0, .httpStatus(500), times: 3)
        h.tick(at: 30)
        // Without the reset, the second of these would have been the fifth in a row.
        #expect(h.record(0, .httpStatus(500), times: 4, at: Self.seconds(31)).isEmpty)
        #expect(h.record(0, .httpStatus(500), at: Self.seconds(31)).map(\.kind) == [.consecutive5xx])
    }

    @Test func ejectionTimeGrowsWithEachEjectionAndIsCapped() {
        var h = Harness(hosts: 10) {
            $0.baseEjectionTime = .seconds(10)
            $0.maxEjectionTime = .seconds(25)
        }
        h.record(0, .httpStatus(500), times: 5, at: 0)
        #expect(h.tick(at: 9.999).isEmpty)
        #expect(h.tick(at: 10).map(\.kind) == [.unejected])  // 10 s

        h.record(0, .httpStatus(500), times: 5, at: Self.seconds(10))
        #expect(h.tick(at: 29.999).isEmpty)
        #expect(h.tick(at: 30).map(\.kind) == [.unejected])  // 20 s

        h.record(0, .httpStatus(500), times: 5, at: Self.seconds(30))
        #expect(h.tick(at: 54.999).isEmpty)
        #expect(h.tick(at: 55).map(\.kind) == [.unejected])  // min(30 s, 25 s)
        #expect(h.detector.numEjections(0) == 3)
    }

    @Test func backoffDecaysByOnePerIntervalSpentUnejected() {
        var h = Harness(hosts: 10)
        h.record(0, .httpStatus(500), times: 5, at: 0)
        h.tick(at: 10)
        h.tick(at: 20)
        #expect(h.tick(at: 30).map(\.kind) == [.unejected])
        // The tick that brought it back does not count; the next one, a whole interval later, does.
        h.tick(at: 40)
        h.record(0, .httpStatus(500), times: 5, at: Self.seconds(45))
        #expect(h.tick(at: 74.999).isEmpty)
        #expect(h.tick(at: 75).map(\.kind) == [.unejected])  // 30 s again, not 60 s
    }

    @Test func reejectedBeforeAnIntervalPassedDoublesTheTime() {
        var h = Harness(hosts: 10)
        h.record(0, .httpStatus(500), times: 5, at: 0)
        h.tick(at: 30)
        h.record(0, .httpStatus(500), times: 5, at: Self.seconds(35))
        h.tick(at: 40)  // 5 s after unejection: no decay
        #expect(h.tick(at: 94.999).isEmpty)
        #expect(h.tick(at: 95).map(\.kind) == [.unejected])  // 60 s
    }

    @Test func jitterIsDrawnInWholeMillisecondsUpToTheMaximum() {
        // First draw: the enforcing chance (0 -> enforced); second: 4321 % 5001 ms of jitter.
        var h = Harness(hosts: 10, random: [0, 4321]) { $0.maxEjectionTimeJitter = .seconds(5) }
        h.record(0, .httpStatus(500), times: 5, at: 0)
        #expect(h.tick(at: 34.320).isEmpty)
        #expect(h.tick(at: 34.321).map(\.kind) == [.unejected])
    }

    @Test func unsetMaxEjectionTimeIsNeverBelowTheBase() {
        var h = Harness(hosts: 10) { $0.baseEjectionTime = .seconds(400) }
        h.record(0, .httpStatus(500), times: 5, at: 0)
        #expect(h.tick(at: 300).isEmpty)
        #expect(h.tick(at: 400).map(\.kind) == [.unejected])
    }

    // MARK: Active health checks

    @Test func aPassingActiveHealthCheckUnejects() {
        var h = Harness(hosts: 10)
        h.record(0, .httpStatus(500), times: 5)
        #expect(h.detector.activeHealthCheckPassed(host: 1, now: 0).isEmpty)
        #expect(
            h.detector.activeHealthCheckPassed(host: 0, now: Self.seconds(2))
                == [Event(host: 0, kind: .unejected, enforced: true)])
        #expect(!h.detector.isEjected(0))
        #expect(h.record(0, .httpStatus(500), times: 4).isEmpty)

        var off = Harness(hosts: 10) { $0.successfulActiveHealthCheckUnejectHost = false }
        off.record(0, .httpStatus(500), times: 5)
        #expect(off.detector.activeHealthCheckPassed(host: 0, now: 0).isEmpty)
        #expect(off.detector.isEjected(0))
    }

    // MARK: Success rate and failure percentage

    @Test func successRateEjectsTheOutlierAmongFiveHosts() {
        var h = Harness(hosts: 5) { $0.maxEjectionPercent = 20 }
        h.traffic(0, total: 100, failures: 50)
        for host in 1..<5 { h.traffic(host, total: 100, failures: 0) }
        #expect(h.tick(at: 10) == [Event(host: 0, kind: .successRate, enforced: true)])
        // {50, 100, 100, 100, 100}: mean 90, stdev 20, threshold 90 - 1.9 * 20 = 52.
        let numbers = h.detector.successRateNumbers(origin: .external)
        #expect(numbers?.average == 90)
        #expect(abs((numbers?.ejectionThreshold ?? 0) - 52) < 1e-9)
        #expect(h.detector.successRate(0, origin: .external) == 50)
        // The counts were the interval's: the next sweep has nothing to judge.
        #expect(h.tick(at: 20).isEmpty)
        #expect(h.detector.successRateNumbers(origin: .external) == nil)
    }

    @Test func successRateOutlierOverflowsWithTheDefaultTenPercent() {
        var h = Harness(hosts: 5)
        h.traffic(0, total: 100, failures: 50)
        for host in 1..<5 { h.traffic(host, total: 100, failures: 0) }
        #expect(h.tick(at: 10) == [Event(host: 0, kind: .overflow, enforced: false, overflowOf: .successRate)])
    }

    @Test func successRateNeedsEnoughHostsWithVolume() {
        var h = Harness(hosts: 5) { $0.maxEjectionPercent = 20 }
        h.traffic(0, total: 100, failures: 50)
        for host in 1..<4 { h.traffic(host, total: 100, failures: 0) }
        h.traffic(4, total: 99, failures: 0)
        #expect(h.tick(at: 10).isEmpty)
        #expect(h.detector.successRateNumbers(origin: .external) == nil)

        var four = Harness(hosts: 4) { $0.maxEjectionPercent = 50 }
        four.traffic(0, total: 100, failures: 50)
        for host in 1..<4 { four.traffic(host, total: 100, failures: 0) }
        #expect(four.tick(at: 10).isEmpty)
    }

    @Test func failurePercentageIsDetectedOnlyByDefaultAndEjectsWhenEnforcing() {
        func run(_ enforcing: Int) -> [Event] {
            var h = Harness(hosts: 5) {
                $0.maxEjectionPercent = 20
                $0.consecutive5xx = 1_000
                $0.enforcingFailurePercentage = enforcing
            }
            // 60 requests: enough for failure percentage (50), not for success rate (100).
            h.traffic(2, total: 60, failures: 51)  // 85 % failures: at the threshold
            h.traffic(3, total: 60, failures: 50)  // 83 %
            for host in [0, 1, 4] { h.traffic(host, total: 60, failures: 0) }
            return h.tick(at: 10)
        }
        #expect(run(0) == [Event(host: 2, kind: .failurePercentage, enforced: false)])
        #expect(run(100) == [Event(host: 2, kind: .failurePercentage, enforced: true)])
    }

    @Test func failurePercentageNeedsEnoughHostsWithVolume() {
        var h = Harness(hosts: 5) {
            $0.maxEjectionPercent = 20
            $0.consecutive5xx = 1_000
            $0.enforcingFailurePercentage = 100
        }
        h.traffic(2, total: 60, failures: 60)
        for host in [0, 1, 3] { h.traffic(host, total: 60, failures: 0) }
        h.traffic(4, total: 49, failures: 0)
        #expect(h.tick(at: 10).isEmpty)
    }

    @Test func aHostEjectedBySuccessRateIsNotEjectedAgainByFailurePercentage() {
        var h = Harness(hosts: 5) {
            $0.maxEjectionPercent = 100
            $0.consecutive5xx = 1_000
            $0.enforcingFailurePercentage = 100
        }
        h.traffic(0, total: 100, failures: 90)
        for host in 1..<5 { h.traffic(host, total: 100, failures: 0) }
        #expect(h.tick(at: 10) == [Event(host: 0, kind: .successRate, enforced: true)])
        #expect(h.detector.ejectedCount == 1)
    }

    @Test func localOriginSuccessRateRunsOnlyWithSplit() {
        func run(split: Bool) -> (events: [Event], host0Ejected: Bool) {
            var h = Harness(hosts: 5) {
                $0.maxEjectionPercent = 20
                $0.splitExternalLocalOriginErrors = split
            }
            h.traffic(0, total: 100, failures: 50, failure: .connectFailed, success: .localOriginSuccess)
            for host in 1..<5 {
                h.traffic(host, total: 100, failures: 0, failure: .connectFailed, success: .localOriginSuccess)
            }
            let ejectedBeforeSweep = h.detector.isEjected(0)
            return (h.tick(at: 10), ejectedBeforeSweep)
        }
        let split = run(split: true)
        #expect(split.events == [Event(host: 0, kind: .localOriginSuccessRate, enforced: true)])
        #expect(!split.host0Ejected)
        // Without the split, connection successes are not counted, so the connect failures are 503s in a row:
        // host 0 is ejected by consecutive 5xx at once, and no host has volume for success rate.
        let plain = run(split: false)
        #expect(plain.events.isEmpty)
        #expect(plain.host0Ejected)
    }

    @Test func theLocalOriginSweepLeavesOutHostsTheExternalSweepJustEjected() {
        var h = Harness(hosts: 5) {
            $0.maxEjectionPercent = 40
            $0.splitExternalLocalOriginErrors = true
        }
        h.traffic(0, total: 100, failures: 50)
        for host in 1..<5 { h.traffic(host, total: 100, failures: 0) }
        h.traffic(1, total: 100, failures: 50, failure: .timeout, success: .localOriginSuccess)
        for host in [0, 2, 3, 4] {
            h.traffic(host, total: 100, failures: 0, failure: .timeout, success: .localOriginSuccess)
        }
        // Host 0 goes first; four hosts are left for the local-origin sweep, one fewer than it needs.
        #expect(h.tick(at: 10) == [Event(host: 0, kind: .successRate, enforced: true)])
        #expect(h.detector.successRateNumbers(origin: .localOrigin) == nil)
        #expect(h.detector.successRate(1, origin: .localOrigin) == 50)
    }

    // MARK: Host list

    @Test func replacingTheHostListForgetsEverything() {
        var h = Harness(hosts: 10)
        h.record(3, .httpStatus(500), times: 5)
        h.record(4, .httpStatus(500), times: 4)
        #expect(h.detector.reset(hostCount: 6) == [Event(host: 3, kind: .unejected, enforced: true)])
        #expect(h.detector.hostCount == 6)
        #expect(h.detector.ejectedCount == 0)
        #expect(h.record(4, .httpStatus(500)).isEmpty)
    }

    // MARK: Stats

    final class StatsHarness {
        let registry = StatsRegistry()
        let stats: OutlierDetectionStats
        let worker: WorkerStats

        init() {
            stats = OutlierDetectionStats(cluster: "c", registry: registry)
            worker = WorkerStats(registry: registry)
        }

        func apply(_ events: [Event]) { for event in events { stats.apply(event, to: worker) } }

        /// The non-zero `cluster.c.outlier_detection.*` values, by short name.
        var nonZero: [String: Int] {
            var values: [String: Int] = [:]
            for (slot, name) in registry.names.enumerated() where worker.values[slot] != 0 {
                values[String(name.dropFirst("cluster.c.outlier_detection.".count))] = worker.values[slot]
            }
            return values
        }
    }

    @Test func registersEnvoysStatNames() {
        let s = StatsHarness()
        #expect(s.registry.names.count == 20)
        #expect(s.registry.names.allSatisfy { $0.hasPrefix("cluster.c.outlier_detection.ejections_") })
        for kind in [
            "consecutive_5xx", "consecutive_gateway_failure", "consecutive_local_origin_failure", "success_rate",
            "failure_percentage", "local_origin_success_rate", "local_origin_failure_percentage",
        ] {
            #expect(s.registry.names.contains("cluster.c.outlier_detection.ejections_detected_\(kind)"))
            #expect(s.registry.names.contains("cluster.c.outlier_detection.ejections_enforced_\(kind)"))
        }
        let active = s.registry.names.firstIndex(of: "cluster.c.outlier_detection.ejections_active")
        #expect(active.map { s.registry.kinds[$0] } == .gauge)
        #expect(active.map { s.registry.snapshot.family($0).family } == "cluster.outlier_detection.ejections_active")
    }

    @Test func statsCountDetectionsEnforcementsAndOverflows() {
        let s = StatsHarness()
        var h = Harness(hosts: 10)
        s.apply(h.record(0, .httpStatus(503), times: 5))
        #expect(
            s.nonZero == [
                "ejections_detected_consecutive_gateway_failure": 1,
                "ejections_detected_consecutive_5xx": 1, "ejections_enforced_consecutive_5xx": 1,
                "ejections_consecutive_5xx": 1, "ejections_total": 1, "ejections_enforced_total": 1,
                "ejections_active": 1,
            ])
        s.apply(h.record(1, .httpStatus(500), times: 5))
        #expect(s.nonZero["ejections_overflow"] == 1)
        #expect(s.nonZero["ejections_detected_consecutive_5xx"] == 2)
        #expect(s.nonZero["ejections_consecutive_5xx"] == 2)
        #expect(s.nonZero["ejections_total"] == 1)
        s.apply(h.tick(at: 30))
        #expect(s.nonZero["ejections_active"] == nil)
    }

    @Test func statsForRateBasedAndLocalOriginEjections() {
        let s = StatsHarness()
        var h = Harness(hosts: 6) {
            $0.maxEjectionPercent = 40
            $0.splitExternalLocalOriginErrors = true
        }
        h.traffic(0, total: 100, failures: 50)
        for host in 1..<6 { h.traffic(host, total: 100, failures: 0) }
        h.traffic(1, total: 100, failures: 50, failure: .timeout, success: .localOriginSuccess)
        for host in [0, 2, 3, 4, 5] {
            h.traffic(host, total: 100, failures: 0, failure: .timeout, success: .localOriginSuccess)
        }
        let events = h.tick(at: 10)
        #expect(
            events == [
                Event(host: 0, kind: .successRate, enforced: true),
                Event(host: 1, kind: .localOriginSuccessRate, enforced: true),
            ])
        s.apply(events)
        s.apply(h.record(2, .connectFailed, times: 5, at: Self.seconds(11)))
        #expect(
            s.nonZero == [
                "ejections_detected_success_rate": 1, "ejections_enforced_success_rate": 1,
                "ejections_detected_local_origin_success_rate": 1, "ejections_enforced_local_origin_success_rate": 1,
                "ejections_success_rate": 2, "ejections_total": 1, "ejections_enforced_total": 2,
                "ejections_active": 2,
                // Three of six hosts would be 50 %: refused.
                "ejections_detected_consecutive_local_origin_failure": 1, "ejections_overflow": 1,
            ])
    }

    /// Envoy 1.40, three round-robin hosts all answering 503, default outlier detection, panic threshold 0,
    /// 30 requests. Without always_eject_one_host it reported ejections_consecutive_5xx 6,
    /// detected_consecutive_5xx 6, detected_consecutive_gateway_failure 6, overflow 12; with it, 5, 5, 5,
    /// overflow 8, enforced_consecutive_5xx 1, enforced_total 1, ejections_total 1, ejections_active 1.
    @Test(arguments: [false, true])
    func matchesEnvoyOnThreeFailingHosts(alwaysEjectOneHost: Bool) {
        let s = StatsHarness()
        var h = Harness(hosts: 3) { $0.alwaysEjectOneHost = alwaysEjectOneHost }
        var next = 0
        for _ in 0..<30 {
            while h.detector.isEjected(next % 3) { next += 1 }
            s.apply(h.record(next % 3, .httpStatus(503)))
            next += 1
        }
        if alwaysEjectOneHost {
            #expect(
                s.nonZero == [
                    "ejections_consecutive_5xx": 5, "ejections_detected_consecutive_5xx": 5,
                    "ejections_detected_consecutive_gateway_failure": 5, "ejections_overflow": 8,
                    "ejections_enforced_consecutive_5xx": 1, "ejections_enforced_total": 1, "ejections_total": 1,
                    "ejections_active": 1,
                ])
        } else {
            #expect(
                s.nonZero == [
                    "ejections_consecutive_5xx": 6, "ejections_detected_consecutive_5xx": 6,
                    "ejections_detected_consecutive_gateway_failure": 6, "ejections_overflow": 12,
                ])
        }
    }
}
