import NIOCore
import Testing

@testable import SidecarCore
@testable import SidecarUpstream

// Priority levels and locality-weighted balancing as pure values. The expected shares are those of Envoy's
// "Priority levels" and "Locality weighted load balancing" docs, and of envoyproxy/examples'
// locality-load-balancing walkthrough (scripts/e2e-xds replays that one against Envoy 1.40 too).
@Suite struct PriorityLoadTests {
    private func load(_ hosts: [Int], _ healthy: [Int], threshold: Double = 50) -> PriorityLoad {
        PriorityLoad(hostCounts: hosts, healthyCounts: healthy, panicThreshold: threshold)
    }

    @Test func trafficTricklesToTheNextLevelAsTheFirstLosesHealth() {
        // The docs' table: two levels, P=1 fully healthy; P=0 healthy share -> traffic to P=0 / P=1.
        let table: [(Int, [Int])] = [(100, [100, 0]), (72, [100, 0]), (71, [99, 1]), (50, [70, 30]), (25, [35, 65]),
                                     (0, [0, 100])]
        for (healthy, expected) in table {
            #expect(load([100, 100], [healthy, 100]).load == expected, "P=0 \(healthy) % healthy")
            #expect(load([100, 100], [healthy, 100]).panic == [false, false])
        }
    }

    @Test func levelsTogetherShortOfFullHealthAreNormalized() {
        // 20 % and 20 % healthy: health 28 + 28 = 56, so each gets 28/56 of the load.
        #expect(load([10, 10], [2, 2]).load == [50, 50])
        // 50 % and 10 %: health 70 + 14 = 84 -> 83 and 16, the remainder (1) to the first healthy level.
        #expect(load([10, 10], [5, 1]).load == [84, 16])
    }

    @Test func panicIsDisregardedWhileTheLevelsMakeUpForIt() {
        // P=0 is 20 % healthy (below the 50 % threshold), but P=1 takes the rest: no panic anywhere.
        #expect(load([5, 1], [1, 1]).panic == [false, false])
        #expect(load([5, 1], [1, 1]).load == [28, 72])
        // Short of 100 % in total, a level under the threshold is in panic (and uses all its hosts).
        let short = load([5, 2], [1, 1])  // health 28 + 70 = 98
        #expect(short.panic == [true, false])
        #expect(short.load == [29, 71])  // 28*100/98 = 28 and 70*100/98 = 71; the remaining 1 to P=0
    }

    @Test func totalPanicSharesTheLoadByHostCount() {
        let all = load([3, 1], [0, 0])
        #expect(all.panic == [true, true])
        #expect(all.load == [75, 25])
        // An empty level takes none; the rounding remainder goes to the first level with hosts.
        #expect(load([0, 1, 2], [0, 0, 0]).load == [0, 34, 66])
    }

    @Test func panicOffWithNothingHealthySendsTheLoadToTheFirstLevel() {
        let off = load([2, 2], [0, 0], threshold: 0)
        #expect(off.load == [100, 0])
        #expect(off.panic == [false, false])
    }

    @Test func aDrawFallsInTheLevelOfItsPercent() {
        let l = load([100, 100], [50, 100])  // 70 / 30
        #expect(l.level(for: 0) == 0)  // point 1
        #expect(l.level(for: 69) == 0)  // point 70
        #expect(l.level(for: 70) == 1)  // point 71
        #expect(l.level(for: 199) == 1)
        #expect(l.level(for: 170) == 1)
        #expect(l.level(for: 100) == 0)
    }

    @Test func localityWeightScalesWithHealthAsTheDocsTable() {
        // Docs: X weight 1, Y weight 2; X's share of traffic as its healthy share falls.
        func share(_ healthyX: Int) -> Double {
            let x = PriorityLoad.effectiveLocalityWeight(weight: 1, hosts: 100, healthy: healthyX)
            let y = PriorityLoad.effectiveLocalityWeight(weight: 2, hosts: 100, healthy: 100)
            return Double(x) / Double(x + y)
        }
        #expect(abs(share(100) - 1.0 / 3) < 0.001)
        #expect(abs(share(70) - 1.0 / 3) < 0.02)  // 70 * 1.4 = 98 %: 0.98 / 2.98
        #expect(abs(share(50) - 0.7 / 2.7) < 0.001)
        #expect(abs(share(25) - 0.35 / 2.35) < 0.001)
        #expect(share(0) == 0)
        #expect(PriorityLoad.effectiveLocalityWeight(weight: 0, hosts: 3, healthy: 3) == 0)
    }
}

/// The balancer over priorities and localities, through `LoadBalancer` with hosts that carry their groups.
@Suite struct PriorityLoadBalancerTests {
    private struct Counting: RandomSource {
        var n: UInt64 = 0
        mutating func next() -> UInt64 { defer { n &+= 1 }; return n }
    }

    /// One host per (priority, locality entry) given, on 198.18.0.<i>.
    private func hosts(_ spec: [(priority: UInt32, entry: Int, weight: UInt32)]) throws -> [UpstreamHost] {
        try spec.enumerated().map { i, s in
            UpstreamHost(address: try SocketAddress(ipAddress: "198.18.0.\(i + 1)", port: 8080), hostname: "",
                         weight: 1, group: Cluster.EndpointGroup(priority: s.priority, index: s.entry,
                                                                 locality: Cluster.Locality(zone: "z\(s.entry)"),
                                                                 localityWeight: s.weight))
        }
    }

    private func tally(_ lb: inout LoadBalancer, _ n: Int, hosts: Int) -> [Int] {
        var random = Counting()
        var out = Array(repeating: 0, count: hosts)
        for _ in 0..<n {
            if let h = lb.choose(hash: nil, activeRequests: [], random: &random, maxAttempts: 0, reject: { _ in false }) {
                out[h.host] += 1
            }
        }
        return out
    }

    private func config(localityWeighted: Bool) -> LoadBalancingConfig {
        var c = LoadBalancingConfig()
        c.localityWeighted = localityWeighted
        return c
    }

    /// envoyproxy/examples locality-load-balancing: local-1 at P0; local-2 and remote-1 at P1 (one locality each,
    /// weight 1); remote-2 at P2.
    private func example() throws -> [UpstreamHost] {
        try hosts([(0, 0, 1), (1, 1, 1), (1, 2, 1), (2, 3, 1)])
    }

    @Test func healthyFirstLevelTakesEverything() throws {
        let h = try example()
        var lb = LoadBalancer(config: config(localityWeighted: true), hosts: h, healthy: [true, true, true, true],
                              workerIndex: 0)
        #expect(tally(&lb, 400, hosts: 4) == [400, 0, 0, 0])
    }

    @Test func anUnhealthyFirstLevelSendsAllToTheNextOneSplitByLocalityWeight() throws {
        let h = try example()
        var lb = LoadBalancer(config: config(localityWeighted: true), hosts: h, healthy: [false, true, true, true],
                              workerIndex: 0)
        #expect(tally(&lb, 400, hosts: 4) == [0, 200, 200, 0])
    }

    @Test func aHalfHealthyLevelSendsItsShareToItsHealthyLocalityOnly() throws {
        // P1 50 % healthy: 70 % to P1 (all of it to remote-1, local-2's locality has weight 0 now), 30 % to P2.
        let h = try example()
        var lb = LoadBalancer(config: config(localityWeighted: true), hosts: h, healthy: [false, false, true, true],
                              workerIndex: 0)
        #expect(lb.priorityLoad.load == [0, 70, 30])
        #expect(tally(&lb, 1000, hosts: 4) == [0, 0, 700, 300])
    }

    @Test func withoutLocalityWeightingALevelIsOneSetOfHosts() throws {
        let h = try example()
        var lb = LoadBalancer(config: config(localityWeighted: false), hosts: h, healthy: [false, false, true, true],
                              workerIndex: 0)
        #expect(tally(&lb, 1000, hosts: 4) == [0, 0, 700, 300])
        // Two healthy hosts at P1: round robin over both, whatever their localities' weights.
        var both = LoadBalancer(config: config(localityWeighted: false), hosts: try hosts([(0, 0, 1), (0, 1, 0)]),
                                healthy: [true, true], workerIndex: 0)
        #expect(tally(&both, 100, hosts: 2) == [50, 50])
    }

    @Test func localityWeightsShareALevel() throws {
        // Zone 0 weight 1 (two hosts), zone 1 weight 3 (one host): 1 : 3 between the zones.
        let h = try hosts([(0, 0, 1), (0, 0, 1), (0, 1, 3)])
        var lb = LoadBalancer(config: config(localityWeighted: true), hosts: h, healthy: [true, true, true],
                              workerIndex: 0)
        #expect(tally(&lb, 400, hosts: 3) == [50, 50, 300])
        // A locality with no weight gets nothing; when none has one, the level's healthy hosts share it.
        var unweighted = LoadBalancer(config: config(localityWeighted: true), hosts: try hosts([(0, 0, 0), (0, 1, 2)]),
                                      healthy: [true, true], workerIndex: 0)
        #expect(tally(&unweighted, 100, hosts: 2) == [0, 100])
        var none = LoadBalancer(config: config(localityWeighted: true), hosts: try hosts([(0, 0, 0), (0, 1, 0)]),
                                healthy: [true, true], workerIndex: 0)
        #expect(tally(&none, 100, hosts: 2) == [50, 50])
    }

    @Test func aLevelInPanicUsesAllItsHostsAndSaysSo() throws {
        // P0 one of four healthy, P1 none of one: health 35 + 0 -> P0 takes all, in panic (25 % < 50 %).
        let h = try hosts([(0, 0, 1), (0, 0, 1), (0, 0, 1), (0, 0, 1), (1, 1, 1)])
        var lb = LoadBalancer(config: config(localityWeighted: true), hosts: h,
                              healthy: [true, false, false, false, false], workerIndex: 0)
        #expect(lb.priorityLoad.panic == [true, true])
        var random = Counting()
        let pick = lb.choose(hash: nil, activeRequests: [], random: &random, maxAttempts: 0) { _ in false }
        #expect(pick?.panic == true)
        // Total panic: by host count, 80 % to P0's four hosts and 20 % to P1's one.
        #expect(lb.priorityLoad.load == [80, 20])
        #expect(tally(&lb, 1000, hosts: 5) == [200, 200, 200, 200, 200])
    }
}
