import NIOCore
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

// Load-balancing policies as pure values: every test drives chance through a scripted or seeded source, so
// each result is exact and repeatable. Golden values marked "Envoy" come from Envoy's own unit tests
// (test/extensions/load_balancing_policies/{ring_hash,maglev}/*_test.cc); xxHash64 vectors come from the
// reference C library (libxxhash 0.8.1).

/// Every load-balancing suite, so `swift test --filter LoadBalancingTests` runs them all.
@Suite struct LoadBalancingTests {}

/// A seeded generator (SplitMix64) for statistical tests: deterministic, well mixed.
private struct SeededRandom: RandomSource {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private struct NoHostChosen: Error {}

private func host(_ ip: String, _ port: Int, weight: UInt32 = 1) throws -> UpstreamHost {
    UpstreamHost(address: try SocketAddress(ipAddress: ip, port: port), hostname: "", weight: weight)
}

/// `127.0.0.1:<port>` for each port, as in Envoy's tests.
private func loopbackHosts(_ ports: [Int], weights: [UInt32]? = nil) throws -> [UpstreamHost] {
    try ports.enumerated().map { i, p in try host("127.0.0.1", p, weight: weights?[i] ?? 1) }
}

/// `10.0.0.<n>:8080` for n in 1...count.
private func podHosts(_ count: Int) throws -> [UpstreamHost] {
    try (1...count).map { try host("10.0.0.\($0)", 8080) }
}

private func config(
    _ policy: Cluster.LBPolicy, _ configure: (inout LoadBalancingConfig) -> Void = { _ in }
) -> LoadBalancingConfig {
    var c = LoadBalancingConfig()
    c.policy = policy
    configure(&c)
    return c
}

private func balancer(
    _ config: LoadBalancingConfig, _ hosts: [UpstreamHost], healthy: [Bool]? = nil, worker: Int = 0
) -> LoadBalancer {
    LoadBalancer(
        config: config, hosts: hosts, healthy: healthy ?? Array(repeating: true, count: hosts.count),
        workerIndex: worker)
}

extension LoadBalancer {
    /// One pick with no retry predicate.
    fileprivate mutating func pick<R: RandomSource>(
        hash: UInt64? = nil, active: [Int] = [], random: inout R
    ) -> Int? {
        choose(hash: hash, activeRequests: active, random: &random, maxAttempts: 0, reject: { _ in false })?.host
    }

    /// One pick with a fixed hash (no randomness needed).
    fileprivate mutating func pick(hash: UInt64) -> Int? {
        var random = ScriptedRandom([0])
        return pick(hash: hash, random: &random)
    }

    /// One pick that must find a host.
    fileprivate mutating func mustPick<R: RandomSource>(
        hash: UInt64? = nil, active: [Int] = [], random: inout R
    ) throws -> Int {
        guard let h = pick(hash: hash, active: active, random: &random) else { throw NoHostChosen() }
        return h
    }

    fileprivate mutating func mustPick(hash: UInt64) throws -> Int {
        guard let h = pick(hash: hash) else { throw NoHostChosen() }
        return h
    }

    /// How often each host index is chosen over `count` picks.
    fileprivate mutating func tally<R: RandomSource>(
        _ count: Int, hosts: Int, active: [Int] = [], random: inout R
    ) -> [Int] {
        var out = Array(repeating: 0, count: hosts)
        for _ in 0..<count {
            if let h = pick(active: active, random: &random) { out[h] += 1 }
        }
        return out
    }
}

/// 10,000 request keys hashed as Envoy hashes a header value.
private let requestHashes: [UInt64] = (0..<10_000).map { XXHash64.hash("user-\($0)") }

extension LoadBalancingTests {
    @Suite struct XXHash64Tests {
        @Test func matchesReferenceVectors() {
            #expect(XXHash64.hash("") == 0xEF46_DB37_51D8_E999)
            #expect(XXHash64.hash("abc") == 0x44BC_2CF5_AD77_0999)
            #expect(XXHash64.hash("abc", seed: 1) == 0xBEA9_CA81_9932_8908)
            // 39 bytes: one 32-byte stripe, then 4- and 1-byte tails.
            #expect(XXHash64.hash("Nobody inspects the spammish repetition") == 0xFBCE_A83C_8A37_8BF1)
            // 40 bytes with a seed: stripe plus an 8-byte tail.
            #expect(XXHash64.hash("0123456789abcdef0123456789abcdef01234567", seed: 7) == 0x1943_E563_463B_0ABA)
            let hundred = (0..<100).map { UInt8($0) }
            #expect(XXHash64.hash(hundred) == 0x6AC1_E580_3216_6597)
            #expect(XXHash64.hash(hundred, seed: 0x9E37_79B9_7F4A_7C15) == 0x3B97_D91E_BA03_E785)
            // A non-contiguous collection hashes like its bytes.
            #expect(XXHash64.hash(hundred.lazy.map { $0 }) == 0x6AC1_E580_3216_6597)
        }

        @Test func placesRingEntriesWhereEnvoyDoes() {
            // Envoy's ring for 127.0.0.1:94 has entries at these positions.
            #expect(XXHash64.hash("127.0.0.1:94_0") == 15_516_499_411_664_133_160)
            #expect(XXHash64.hash("127.0.0.1:94_1") == 833_437_586_790_550_860)
        }
    }
}

extension LoadBalancingTests {
    @Suite struct RoundRobinTests {
        @Test func weightedHostsInterleaveInProportion() throws {
            let hosts = try loopbackHosts([90, 91, 92], weights: [5, 2, 3])
            var lb = balancer(config(.ROUND_ROBIN), hosts)
            var random = ScriptedRandom([0])
            var picks: [Int] = []
            for _ in 0..<10_000 { picks.append(try lb.mustPick(random: &random)) }
            // nginx's smooth weighted round robin: one cycle of 10 is a c b a a c a b c a.
            #expect(Array(picks.prefix(10)) == [0, 2, 1, 0, 0, 2, 0, 1, 2, 0])
            let counts = (0..<3).map { h in picks.count(where: { $0 == h }) }
            #expect(counts == [5000, 2000, 3000])
            // Never more than two of the weight-5 host in a row, even across cycles.
            var run = 0
            var longest = 0
            for p in picks {
                run = p == 0 ? run + 1 : 0
                longest = max(longest, run)
            }
            #expect(longest == 2)
        }

        @Test func equalWeightsRotateAndWorkersStartApart() throws {
            let hosts = try podHosts(3)
            var random = ScriptedRandom([0])
            var first = balancer(config(.ROUND_ROBIN), hosts, worker: 0)
            #expect((0..<6).map { _ in first.pick(random: &random) } == [0, 1, 2, 0, 1, 2])
            var second = balancer(config(.ROUND_ROBIN), hosts, worker: 1)
            #expect((0..<3).map { _ in second.pick(random: &random) } == [1, 2, 0])
            var fifth = balancer(config(.ROUND_ROBIN), hosts, worker: 4)
            #expect(fifth.pick(random: &random) == 1)
        }

        @Test func weightedScheduleIsOffsetPerWorkerWithSameShares() throws {
            let hosts = try loopbackHosts([90, 91, 92], weights: [5, 2, 3])
            var random = ScriptedRandom([0])
            var worker1 = balancer(config(.ROUND_ROBIN), hosts, worker: 1)
            var picks: [Int] = []
            for _ in 0..<10 { picks.append(try worker1.mustPick(random: &random)) }
            // Worker 1 starts one step into the cycle a c b a a c a b c a.
            #expect(picks == [2, 1, 0, 0, 2, 0, 1, 2, 0, 0])
        }

        @Test func unhealthyHostsAreSkippedAndHealthyOnesStillInterleave() throws {
            let hosts = try loopbackHosts([90, 91, 92, 93], weights: [5, 2, 3, 9])
            var lb = balancer(config(.ROUND_ROBIN), hosts, healthy: [true, true, true, false])
            var random = ScriptedRandom([0])
            #expect(lb.tally(10_000, hosts: 4, random: &random) == [5000, 2000, 3000, 0])
        }
    }
}

extension LoadBalancingTests {
    @Suite struct LeastRequestTests {
        /// Drives two draws per pick through all nine (first, second) pairs over three hosts.
        private static let allPairs: [UInt64] = [0, 0, 0, 1, 0, 2, 1, 0, 1, 1, 1, 2, 2, 0, 2, 1, 2, 2]

        @Test func twoChoicesPickTheBusyHostOnlyWhenBothDrawsLandOnIt() throws {
            let hosts = try podHosts(3)
            var lb = balancer(config(.LEAST_REQUEST), hosts)
            // Envoy draws choice_count hosts with replacement and keeps the first of the least loaded, so the busy
            // host wins exactly when every draw is it: (1/3)^2 = 1/9. The idle two tie and split the rest.
            var pairs = ScriptedRandom(Self.allPairs)
            #expect(lb.tally(9 * 1000, hosts: 3, active: [10, 0, 0], random: &pairs) == [1000, 4000, 4000])

            var seeded = SeededRandom(seed: 42)
            let counts = lb.tally(90_000, hosts: 3, active: [10, 0, 0], random: &seeded)
            let busyShare = Double(counts[0]) / 90_000
            #expect(abs(busyShare - 1.0 / 9) < 0.005)
        }

        @Test func threeChoicesPickTheBusyHostOnlyWhenAllThreeDrawsLandOnIt() throws {
            let hosts = try podHosts(3)
            var lb = balancer(config(.LEAST_REQUEST) { $0.choiceCount = 3 }, hosts)
            // All 27 ordered triples over three hosts, one per pick: only (0, 0, 0) yields the busy host.
            var draws: [UInt64] = []
            for t in 0..<27 { draws += [UInt64(t / 9), UInt64(t / 3 % 3), UInt64(t % 3)] }
            var triples = ScriptedRandom(draws)
            let counts = lb.tally(27 * 100, hosts: 3, active: [10, 0, 0], random: &triples)
            #expect(counts[0] == 100)
            #expect(counts[1] + counts[2] == 2600)

            var seeded = SeededRandom(seed: 7)
            let share = Double(lb.tally(90_000, hosts: 3, active: [10, 0, 0], random: &seeded)[0]) / 90_000
            #expect(abs(share - 1.0 / 27) < 0.003)
        }

        @Test func theLessLoadedOfTwoDrawnHostsWins() throws {
            let hosts = try podHosts(3)
            var lb = balancer(config(.LEAST_REQUEST), hosts)
            var random = ScriptedRandom([0, 2])
            #expect(lb.pick(active: [5, 0, 3], random: &random) == 2)
            random = ScriptedRandom([2, 0])
            #expect(lb.pick(active: [1, 0, 3], random: &random) == 0)
            // Ties keep the first draw.
            random = ScriptedRandom([2, 1])
            #expect(lb.pick(active: [0, 4, 4], random: &random) == 2)
        }

        @Test func weightedHostsShareByWeightOverLoad() throws {
            let hosts = try loopbackHosts([90, 91, 92], weights: [1, 2, 3])
            var random = ScriptedRandom([0])
            var idle = balancer(config(.LEAST_REQUEST), hosts)
            #expect(idle.tally(6000, hosts: 3, active: [0, 0, 0], random: &random) == [1000, 2000, 3000])

            let pair = try loopbackHosts([90, 91], weights: [4, 1])
            // Bias 1 (default): 4 / (3 + 1) = 1 against 1 / (0 + 1) = 1: even.
            var biased = balancer(config(.LEAST_REQUEST), pair)
            #expect(biased.tally(1000, hosts: 2, active: [3, 0], random: &random) == [500, 500])
            // Bias 0: load ignored, plain 4:1.
            var unbiased = balancer(config(.LEAST_REQUEST) { $0.activeRequestBias = 0 }, pair)
            #expect(unbiased.tally(1000, hosts: 2, active: [3, 0], random: &random) == [800, 200])
            // Bias 2: 4 / 16 = 0.25 against 1: 1:4.
            var strong = balancer(config(.LEAST_REQUEST) { $0.activeRequestBias = 2 }, pair)
            #expect(strong.tally(1000, hosts: 2, active: [3, 0], random: &random) == [200, 800])
        }

        @Test func weightedPicksFollowLoadAsItChanges() throws {
            let pair = try loopbackHosts([90, 91], weights: [2, 1])
            var lb = balancer(config(.LEAST_REQUEST), pair)
            var random = ScriptedRandom([0])
            var active = [0, 0]
            // Requests that never finish: each pick adds load, and picks go in proportion to weight / (active + 1).
            // Host 0 therefore gains load at 2 (a1 + 1) / (a0 + 1) times host 1's rate, which settles at
            // (a0 + 1)^2 = 2 (a1 + 1)^2: a sqrt(2) : 1 split, 175.7 of 300, not the 2 : 1 of idle hosts.
            for _ in 0..<300 {
                let h = try lb.mustPick(active: active, random: &random)
                active[h] += 1
            }
            #expect(abs(active[0] - 176) <= 3)
            // A host carrying load is passed over for an idle one of lower weight.
            // Scores 2 / 6 against 1 / 1: one pick in four.
            var loaded = balancer(config(.LEAST_REQUEST), pair)
            let counts = loaded.tally(400, hosts: 2, active: [5, 0], random: &random)
            #expect(abs(counts[0] - 100) <= 1)
        }
    }
}

extension LoadBalancingTests {
    @Suite struct RandomTests {
        @Test func spreadsUniformlyOverCandidates() throws {
            let hosts = try loopbackHosts([90, 91, 92], weights: [1, 5, 1])
            var lb = balancer(config(.RANDOM), hosts)
            // Envoy's RANDOM ignores weights: random % count.
            var scripted = ScriptedRandom([4, 5, 6])
            #expect((0..<3).map { _ in lb.pick(random: &scripted) } == [1, 2, 0])
            var seeded = SeededRandom(seed: 3)
            let counts = lb.tally(30_000, hosts: 3, random: &seeded)
            for c in counts { #expect(abs(Double(c) / 30_000 - 1.0 / 3) < 0.01) }
        }
    }
}

extension LoadBalancingTests {
    @Suite struct PanicTests {
        @Test func belowThresholdEveryHostIsUsed() throws {
            let hosts = try podHosts(5)
            var lb = balancer(config(.ROUND_ROBIN), hosts, healthy: [true, true, false, false, false])
            #expect(lb.inPanic)
            #expect(lb.candidates == [0, 1, 2, 3, 4])
            var random = ScriptedRandom([0])
            #expect(lb.tally(500, hosts: 5, random: &random) == [100, 100, 100, 100, 100])
        }

        @Test func atOrAboveThresholdOnlyHealthyHostsAreUsed() throws {
            let hosts = try podHosts(5)
            var lb = balancer(config(.ROUND_ROBIN), hosts, healthy: [false, true, true, false, true])
            #expect(!lb.inPanic)
            var random = ScriptedRandom([0])
            #expect(lb.tally(300, hosts: 5, random: &random) == [0, 100, 100, 0, 100])
            // Exactly 50 % is not below 50 %.
            let four = try podHosts(4)
            #expect(!balancer(config(.ROUND_ROBIN), four, healthy: [true, true, false, false]).inPanic)
        }

        @Test func zeroThresholdNeverPanics() throws {
            let hosts = try podHosts(5)
            let off = config(.ROUND_ROBIN) { $0.healthyPanicThreshold = 0 }
            var one = balancer(off, hosts, healthy: [false, false, false, true, false])
            #expect(!one.inPanic)
            var random = ScriptedRandom([0])
            #expect(one.tally(50, hosts: 5, random: &random) == [0, 0, 0, 50, 0])
            var none = balancer(off, hosts, healthy: Array(repeating: false, count: 5))
            #expect(!none.inPanic)
            #expect(none.pick(random: &random) == nil)
        }

        @Test func allUnhealthyWithPanicEnabledStillPicks() throws {
            let hosts = try podHosts(3)
            var lb = balancer(config(.RANDOM), hosts, healthy: [false, false, false])
            #expect(lb.inPanic)
            var random = ScriptedRandom([1])
            #expect(lb.pick(random: &random) == 1)
        }

        @Test func thresholdIsRoundedAndCappedAsEnvoyDoes() throws {
            let hosts = try podHosts(4)
            let healthy = [true, true, false, false]
            #expect(!balancer(config(.RANDOM) { $0.healthyPanicThreshold = 50.4 }, hosts, healthy: healthy).inPanic)
            #expect(balancer(config(.RANDOM) { $0.healthyPanicThreshold = 50.6 }, hosts, healthy: healthy).inPanic)
            // Capped at 100 %: half the hosts healthy is below it...
            #expect(balancer(config(.RANDOM) { $0.healthyPanicThreshold = 250 }, hosts, healthy: healthy).inPanic)
            // ...but three of four is not panic: 75 % times the overprovisioning factor (1.4) is 100 % health, and
            // Envoy disregards the threshold when the levels' health adds up to 100 % (the priority levels doc).
            let allButOne = [true, true, true, false]
            #expect(!balancer(config(.RANDOM) { $0.healthyPanicThreshold = 250 }, hosts, healthy: allButOne).inPanic)
            #expect(
                !balancer(config(.RANDOM) { $0.healthyPanicThreshold = 250 }, hosts, healthy: [true, true, true, true])
                    .inPanic)
        }

        @Test func noHostsGiveNothing() {
            for policy in Cluster.LBPolicy.allCases {
                var lb = balancer(config(policy), [])
                var random = ScriptedRandom([0])
                #expect(lb.pick(random: &random) == nil)
            }
        }

        @Test func unhealthyHostsAreNeverChosenOutsidePanic() throws {
            let hosts = try podHosts(5)
            let healthy = [true, false, true, false, true]
            for policy in Cluster.LBPolicy.allCases {
                var lb = balancer(config(policy) { $0.maglevTableSize = 251 }, hosts, healthy: healthy)
                var random = SeededRandom(seed: 11)
                let counts = lb.tally(3000, hosts: 5, active: [0, 0, 0, 0, 0], random: &random)
                #expect(counts[1] == 0 && counts[3] == 0, "\(policy)")
                #expect(counts[0] > 0 && counts[2] > 0 && counts[4] > 0, "\(policy)")
            }
        }
    }
}

extension LoadBalancingTests {
    @Suite struct HostSelectionRetryTests {
        @Test func rejectedHostIsPickedAgain() throws {
            let hosts = try podHosts(3)
            var lb = balancer(config(.ROUND_ROBIN), hosts)
            var random = ScriptedRandom([0])
            var asked: [Int] = []
            let h = lb.choose(hash: nil, activeRequests: [], random: &random, maxAttempts: 1) { host in
                asked.append(host)
                return host == 0
            }
            #expect(h?.host == 1)
            #expect(asked == [0, 1])
        }

        @Test func afterMaxAttemptsTheLastPickIsUsedAnyway() throws {
            let hosts = try podHosts(3)
            var lb = balancer(config(.ROUND_ROBIN), hosts)
            var random = ScriptedRandom([0])
            var asked: [Int] = []
            let h = lb.choose(hash: nil, activeRequests: [], random: &random, maxAttempts: 2) { host in
                asked.append(host)
                return true
            }
            // host_selection_retry_max_attempts 2: three picks in all.
            #expect(asked == [0, 1, 2])
            #expect(h?.host == 2)
            asked = []
            let once = lb.choose(hash: nil, activeRequests: [], random: &random, maxAttempts: 0) { host in
                asked.append(host)
                return true
            }
            #expect(once?.host == 0)
            #expect(asked == [0])
        }

        @Test func leastRequestRedrawsOnRejection() throws {
            let hosts = try podHosts(3)
            var lb = balancer(config(.LEAST_REQUEST), hosts)
            // First pick draws (1, 1) -> host 1 (rejected); second draws (2, 0) -> host 0 (less loaded).
            var random = ScriptedRandom([1, 1, 2, 0])
            let h = lb.choose(hash: nil, activeRequests: [0, 0, 5], random: &random, maxAttempts: 1) { $0 == 1 }
            #expect(h?.host == 0)
        }

        @Test func ringHashWalksTheRingAsEnvoyDoes() throws {
            // Envoy: RingHashLoadBalancerTest.BasicWithRetryHostPredicate.
            let hosts = try loopbackHosts(Array(90...95))
            var lb = balancer(config(.RING_HASH) { $0.minimumRingSize = 12 }, hosts)
            var random = ScriptedRandom([0])
            func choose(_ attempts: Int, _ reject: (Int) -> Bool) -> Int? {
                lb.choose(hash: 0, activeRequests: [], random: &random, maxAttempts: attempts, reject: reject)?.host
            }
            #expect(choose(2) { _ in false } == 4)
            #expect(choose(2) { $0 == 4 } == 2)
            #expect(choose(2) { _ in true } == 0)
            #expect(choose(13) { _ in true } == 2)
        }

        @Test func maglevFlipsTheHashAsEnvoyDoes() throws {
            // Envoy: MaglevLoadBalancerTest.BasicWithRetryHostPredicate.
            let hosts = try loopbackHosts(Array(90...95))
            var lb = balancer(config(.MAGLEV) { $0.maglevTableSize = 7 }, hosts)
            var random = ScriptedRandom([0])
            func choose(_ attempts: Int, _ reject: (Int) -> Bool) -> Int? {
                lb.choose(hash: 10, activeRequests: [], random: &random, maxAttempts: attempts, reject: reject)?.host
            }
            #expect(choose(2) { _ in false } == 1)
            #expect(choose(2) { $0 == 1 } == 0)
            #expect(choose(2) { _ in true } == 5)
        }
    }
}

extension LoadBalancingTests {
    @Suite struct RingHashTests {
        @Test func ringMatchesEnvoys() throws {
            // Envoy: RingHashLoadBalancerTest.Basic (127.0.0.1:90..95, minimum_ring_size 12).
            let hosts = try loopbackHosts(Array(90...95))
            var lb = balancer(config(.RING_HASH) { $0.minimumRingSize = 12 }, hosts)
            #expect(lb.ringSize == 12)
            #expect(lb.hashEntriesPerHost(hostCount: 6) == [2, 2, 2, 2, 2, 2])
            #expect(lb.pick(hash: 0) == 4)
            #expect(lb.pick(hash: .max) == 4)
            #expect(lb.pick(hash: 3_551_244_743_356_806_947) == 5)
            #expect(lb.pick(hash: 3_551_244_743_356_806_948) == 3)
            // No hash: a random one, here scripted.
            var random = ScriptedRandom([16_117_243_373_044_804_880])
            #expect(lb.pick(random: &random) == 0)

            // All unhealthy: panic, same ring over all hosts.
            var panicked = balancer(
                config(.RING_HASH) { $0.minimumRingSize = 12 }, hosts, healthy: Array(repeating: false, count: 6))
            #expect(panicked.inPanic)
            #expect(panicked.pick(hash: 0) == 4)
        }

        @Test func ringSizeRoundsUpSoEveryHostGetsWholeEntries() throws {
            // Envoy: UnevenHosts. Two hosts, minimum 3: two entries each, ring of 4.
            var lb = balancer(config(.RING_HASH) { $0.minimumRingSize = 3 }, try loopbackHosts([80, 81]))
            #expect(lb.ringSize == 4)
            #expect(lb.pick(hash: 0) == 0)
            var moved = balancer(config(.RING_HASH) { $0.minimumRingSize = 3 }, try loopbackHosts([81, 82]))
            #expect(moved.pick(hash: 0) == 0)
            // Defaults: five equal hosts, minimum 1024 -> 205 entries each.
            let five = balancer(config(.RING_HASH), try podHosts(5))
            #expect(five.ringSize == 1025)
            #expect(five.hashEntriesPerHost(hostCount: 5) == [205, 205, 205, 205, 205])
        }

        @Test func weightsSetEntriesPerHost() throws {
            // Envoy: HostWeightedTinyRing. Weights 1, 2, 3 on a ring of exactly 6.
            let hosts = try loopbackHosts([90, 91, 92], weights: [1, 2, 3])
            var lb = balancer(
                config(.RING_HASH) {
                    $0.minimumRingSize = 6
                    $0.maximumRingSize = 6
                }, hosts)
            #expect(lb.ringSize == 6)
            #expect(lb.hashEntriesPerHost(hostCount: 3) == [1, 2, 3])
            let expected: [(UInt64, Int)] = [
                (928_266_305_478_181_108, 2), (4_443_673_547_860_492_590, 2), (5_583_722_120_771_150_861, 1),
                (6_311_230_543_546_372_928, 1), (13_444_792_449_719_432_967, 2), (16_117_243_373_044_804_889, 0),
            ]
            for (hash, want) in expected { #expect(lb.pick(hash: hash) == want) }
            // The lightest host gets whole entries: 1, 2, 3 with minimum 100 -> 17, 34, 51.
            let rounded = balancer(config(.RING_HASH) { $0.minimumRingSize = 100 }, hosts)
            #expect(rounded.ringSize == 102)
            #expect(rounded.hashEntriesPerHost(hostCount: 3) == [17, 34, 51])
            // ... unless that would pass maximum_ring_size: weights 1 and 1000 would need 2 * 1001 entries.
            let skewed = try loopbackHosts([90, 91], weights: [1, 1000])
            // The scale is capped at 1500; the running target ends at 1500.0000000000002 in doubles, so (as in
            // Envoy) one extra entry is made: 2 for the light host, 1499 for the heavy one.
            let capped = balancer(config(.RING_HASH) { $0.maximumRingSize = 1500 }, skewed)
            #expect(capped.hashEntriesPerHost(hostCount: 2) == [2, 1499])
        }

        @Test func sameKeySameHost() throws {
            var lb = balancer(config(.RING_HASH), try podHosts(5))
            var other = balancer(config(.RING_HASH), try podHosts(5), worker: 3)
            for h in requestHashes.prefix(1000) {
                let first = lb.pick(hash: h)
                #expect(first != nil)
                #expect(lb.pick(hash: h) == first)
                #expect(other.pick(hash: h) == first)
            }
        }

        @Test func losingOneHostOfFiveMovesItsKeysAndThoseTakenByNewEntries() throws {
            // Envoy sizes the ring so the lightest host gets ceil(minimum_ring_size * its share) entries: with the
            // default 1024, five hosts get 205 entries each and four get 256. So when one of five goes, its keys
            // (about a fifth) move, and so do the keys the survivors' 51 new entries each now cover.
            let hosts = try podHosts(5)
            let share = try remap(config(.RING_HASH), hosts: hosts, removed: 3)
            #expect(share.moved - share.collateral >= 0.15 && share.moved - share.collateral <= 0.25)
            #expect(share.collateral < 0.12)

            // Every key that moved between surviving hosts now sits on an entry the old ring did not have.
            let keys = hosts.map(\.hashKey)
            let five = HashRing(keys: keys, weights: [1, 1, 1, 1, 1], minimumSize: 1024, maximumSize: 1 << 23)
            let survivors = [0, 1, 2, 4]
            let four = HashRing(
                keys: survivors.map { keys[$0] }, weights: [1, 1, 1, 1], minimumSize: 1024, maximumSize: 1 << 23)
            #expect(five.entriesPerHost(count: 5) == [205, 205, 205, 205, 205])
            #expect(four.entriesPerHost(count: 4) == [256, 256, 256, 256])
            let oldPositions = Set(five.positions)
            var collateral = 0
            for h in requestHashes {
                let before = try #require(five.host(for: h))
                let entry = try #require(four.entry(for: h))
                let after = survivors[Int(four.owners[entry])]
                if before != 3 && after != before {
                    collateral += 1
                    #expect(!oldPositions.contains(four.positions[entry]))
                }
            }
            #expect(Double(collateral) / Double(requestHashes.count) == share.collateral)
        }

        @Test func withUnchangedEntriesPerHostOnlyTheLostHostsKeysMove() throws {
            // With a minimum that gives each host the same number of entries before and after (one light host
            // pins the scale: 1 entry for it, 200 for each weight-200 host), removing a host moves its keys only.
            let hosts = try podHosts(6)
            let weights: [UInt32] = [1, 200, 200, 200, 200, 200]
            let weighted = zip(hosts, weights).map { h, w in
                var h = h
                h.weight = w
                return h
            }
            let share = try remap(config(.RING_HASH) { $0.minimumRingSize = 1 }, hosts: weighted, removed: 3)
            #expect(share.collateral == 0)
            #expect(share.moved >= 0.15 && share.moved <= 0.25)
        }
    }
}

extension LoadBalancingTests {
    @Suite struct MaglevTests {
        @Test func tableMatchesEnvoys() throws {
            // Envoy: MaglevLoadBalancerTest.Basic (127.0.0.1:90..95, table_size 7).
            let hosts = try loopbackHosts(Array(90...95))
            var lb = balancer(config(.MAGLEV) { $0.maglevTableSize = 7 }, hosts)
            let expected = [2, 4, 0, 1, 5, 0, 3]
            for i in 0..<21 { #expect(lb.pick(hash: UInt64(i)) == expected[i % 7]) }
            #expect(lb.hashEntriesPerHost(hostCount: 6).min() == 1)
            #expect(lb.hashEntriesPerHost(hostCount: 6).max() == 2)
        }

        @Test func tableDoesNotDependOnHostOrder() throws {
            // Envoy: BasicStability. The same hosts in another order own the same slots.
            let shuffled = try loopbackHosts([93, 90, 95, 91, 94, 92])
            var lb = balancer(config(.MAGLEV) { $0.maglevTableSize = 7 }, shuffled)
            let expectedPorts = [92, 94, 90, 91, 95, 90, 93]
            for i in 0..<7 {
                let h = try lb.mustPick(hash: UInt64(i))
                #expect(shuffled[h].address.port == expectedPorts[i])
            }
        }

        @Test func weightsSetSlotsPerHost() throws {
            // Envoy: MaglevLoadBalancerTest.Weighted (weights 1 and 2, table_size 17).
            let hosts = try loopbackHosts([90, 91], weights: [1, 2])
            var lb = balancer(config(.MAGLEV) { $0.maglevTableSize = 17 }, hosts)
            #expect(lb.hashEntriesPerHost(hostCount: 2) == [6, 11])
            let expected = [1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1]
            for i in 0..<34 { #expect(lb.pick(hash: UInt64(i)) == expected[i % 17]) }
            // One host owns every slot.
            var single = balancer(config(.MAGLEV) { $0.maglevTableSize = 17 }, try loopbackHosts([90], weights: [7]))
            for i in 0..<17 { #expect(single.pick(hash: UInt64(i)) == 0) }
        }

        @Test func defaultTableIsFullAndEven() throws {
            let lb = balancer(config(.MAGLEV), try podHosts(5))
            let perHost = lb.hashEntriesPerHost(hostCount: 5)
            #expect(perHost.reduce(0, +) == 65537)
            #expect(perHost.allSatisfy { abs($0 - 65537 / 5) <= 1 })
        }

        @Test func sameKeySameHost() throws {
            var lb = balancer(config(.MAGLEV), try podHosts(5))
            var other = balancer(config(.MAGLEV), try podHosts(5), worker: 2)
            for h in requestHashes.prefix(1000) {
                let first = lb.pick(hash: h)
                #expect(first != nil)
                #expect(lb.pick(hash: h) == first)
                #expect(other.pick(hash: h) == first)
            }
        }

        @Test func losingOneHostOfFiveMovesAboutAFifthOfKeys() throws {
            // Maglev keeps each survivor's preferred slots, so almost only the lost host's keys move; the paper
            // (and Envoy) accept the few that shift between survivors while slots are refilled.
            let share = try remap(config(.MAGLEV), hosts: try podHosts(5), removed: 3)
            #expect(share.moved >= 0.15 && share.moved <= 0.25)
            #expect(share.collateral < 0.005)
        }

        @Test func tableSizeMustBePrime() {
            #expect(MaglevTable.isPrime(65537))
            #expect(MaglevTable.isPrime(7))
            #expect(!MaglevTable.isPrime(65536))
            #expect(!MaglevTable.isPrime(1))
            #expect(!MaglevTable.isPrime(9))
        }
    }
}

/// What happens to 10,000 request keys when host `removed` of `hosts` goes away, through health (rebuilt over
/// the healthy hosts) and through removal from the host list; both must give the same answer.
private func remap(
    _ config: LoadBalancingConfig, hosts: [UpstreamHost], removed: Int
) throws -> (moved: Double, collateral: Double) {
    var all = balancer(config, hosts)
    let before = try requestHashes.map { try all.mustPick(hash: $0) }

    var healthy = Array(repeating: true, count: hosts.count)
    healthy[removed] = false
    var unhealthy = balancer(config, hosts, healthy: healthy)
    #expect(!unhealthy.inPanic)
    let afterHealth = try requestHashes.map { try unhealthy.mustPick(hash: $0) }

    let remaining = hosts.indices.filter { $0 != removed }
    var smaller = balancer(config, remaining.map { hosts[$0] })
    let afterRemoval = try requestHashes.map { remaining[try smaller.mustPick(hash: $0)] }
    #expect(afterHealth == afterRemoval)
    #expect(!afterRemoval.contains(removed))

    var moved = 0
    var collateral = 0
    for (b, a) in zip(before, afterRemoval) where a != b {
        moved += 1
        if b != removed { collateral += 1 }
    }
    let n = Double(requestHashes.count)
    return (Double(moved) / n, Double(collateral) / n)
}
