import NIOCore
import NIOEmbedded
import Testing
@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// A worker's cluster after a config snapshot dropped it: streams that started before still finish on it, but it
/// leaves the membership and ejection gauges and changes them no more.
struct ThreadLocalClusterTests {
    static func hosts(_ n: Int) -> [UpstreamHost] {
        (1...n).map {
            UpstreamHost(address: try! SocketAddress(ipAddress: "10.0.0.\($0)", port: 80), hostname: "h\($0)", weight: 1)
        }
    }

    @Test func aRemovedClusterLeavesItsGaugesAndEjectsNoMore() {
        var config = Cluster(
            name: "svc", type: .STATIC, connectTimeout: .seconds(1), lbPolicy: .ROUND_ROBIN, endpoints: [],
            dnsRefreshRate: .seconds(5), dnsLookupFamily: .AUTO, perConnectionBufferLimitBytes: 1 << 20)
        var od = OutlierDetectionConfig()
        od.consecutive5xx = 1
        od.maxEjectionPercent = 100
        config.outlierDetection = od
        let registry = StatsRegistry()
        let info = ClusterInfo(config: config, registry: registry)
        let stats = WorkerStats(registry: registry)
        let local = ThreadLocalCluster(info: info, hosts: Self.hosts(3), eventLoop: EmbeddedEventLoop(), workerIndex: 0,
                                       stats: stats)
        var random = FastRandom()
        local.record(0, .httpStatus(503), random: &random)
        #expect(local.healthFlags(0) == "/failed_outlier_check")
        #expect(stats.values[info.stats.membershipTotal] == 3)
        #expect(stats.values[info.stats.membershipHealthy] == 2)
        #expect(stats.values[info.outlierStats!.ejectionsActive] == 1)

        local.remove()
        #expect(local.removed && local.pool.draining)
        #expect(stats.values[info.stats.membershipTotal] == 0)
        #expect(stats.values[info.stats.membershipHealthy] == 0)
        #expect(stats.values[info.outlierStats!.ejectionsActive] == 0)

        // An answer to a stream of an older snapshot still counts for the host, but ejects no one.
        local.record(1, .httpStatus(503), random: &random)
        #expect(local.healthFlags(1) == "healthy")
        #expect(local.hostCounters[1].rqError == 1)
        #expect(stats.values[info.stats.membershipHealthy] == 0)
        #expect(stats.values[info.outlierStats!.ejectionsActive] == 0)
    }

    /// A host chosen before the host list was replaced (EDS, DNS) is given back where it is now, or not at all
    /// when it left: its index may name another host, or none, in the new list.
    @Test func aHostChosenBeforeTheListWasReplacedIsFoundByWhatItIs() {
        let config = Cluster(
            name: "svc", type: .EDS, connectTimeout: .seconds(1), lbPolicy: .ROUND_ROBIN, endpoints: [],
            dnsRefreshRate: .seconds(5), dnsLookupFamily: .AUTO, perConnectionBufferLimitBytes: 1 << 20)
        let registry = StatsRegistry()
        let info = ClusterInfo(config: config, registry: registry)
        let local = ThreadLocalCluster(info: info, hosts: Self.hosts(3), eventLoop: EmbeddedEventLoop(), workerIndex: 0,
                                       stats: WorkerStats(registry: registry))
        let hosts = Self.hosts(3)
        let generation = local.hostsGeneration
        local.requestStarted(2)
        local.requestStarted(1)
        #expect(local.currentIndex(2, generation: generation, host: hosts[2]) == 2)

        // Host 3 moves to the front; host 2 leaves.
        local.replaceHosts([hosts[2], hosts[0]])
        #expect(local.currentIndex(2, generation: generation, host: hosts[2]) == 0)
        #expect(local.currentIndex(1, generation: generation, host: hosts[1]) == nil)
        #expect(local.activeRequests == [1, 0], "host 3's request moved with it; host 2's left with host 2")
        local.requestEnded(local.currentIndex(2, generation: generation, host: hosts[2])!)
        #expect(local.activeRequests == [0, 0])
    }
}
