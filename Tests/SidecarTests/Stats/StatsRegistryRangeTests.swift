import Testing
@testable import Sidecar
@testable import SidecarCore

/// A cluster's `upstream_rq_<code>` counters are a range of slots named only when shown.
struct StatsRegistryRangeTests {
    @Test func codeCountersAreNamedWhenShownInEveryFormAndKeepTheirSlots() throws {
        let registry = StatsRegistry()
        let svc = ClusterStats(cluster: "svc", registry: registry)
        let other = ClusterStats(cluster: "other", registry: registry)
        let plainAfter = registry.register("after.the.ranges", .counter)
        var values = Array(repeating: 0, count: registry.count)
        values[try #require(svc.code(503))] = 2
        values[try #require(svc.code(200))] = 5
        values[try #require(other.code(511))] = 1
        values[try #require(other.code(100))] = 3
        values[plainAfter] = 7
        #expect(svc.code(99) == nil && svc.code(600) == nil)

        let view = StatsView(registry: registry, values: values, filter: nil, usedOnly: false)
        let text = view.text()
        for line in ["cluster.svc.upstream_rq_503: 2", "cluster.svc.upstream_rq_200: 5", "cluster.other.upstream_rq_511: 1",
                     "cluster.other.upstream_rq_100: 3", "after.the.ranges: 7"] {
            #expect(text.contains(line + "\n"), "missing \(line)")
        }
        // Lazy, as Envoy creates them on first use: a code never counted is not shown.
        #expect(!text.contains("cluster.svc.upstream_rq_404"))
        let prometheus = view.prometheus()
        #expect(prometheus.contains(#"envoy_cluster_upstream_rq{envoy_response_code="503",envoy_cluster_name="svc"} 2"#))
        #expect(prometheus.contains(#"envoy_cluster_upstream_rq{envoy_response_code="100",envoy_cluster_name="other"} 3"#))
        let filtered = try StatsView(registry: registry, values: values, filter: CompiledRegex("upstream_rq_5"),
                                     usedOnly: false).text()
        #expect(filtered == "cluster.other.upstream_rq_511: 1\ncluster.svc.upstream_rq_503: 2\n")

        // The same cluster registered again (a changed config) keeps its slots.
        #expect(ClusterStats(cluster: "svc", registry: registry).code(503) == svc.code(503))
        #expect(registry.count == values.count)
    }

    /// Only the registered codes have slots (63 per cluster, not 500); another code is counted by name on first
    /// use, and shows as the others do.
    @Test func aCodeWithoutASlotIsCountedByName() throws {
        let registry = StatsRegistry()
        let svc = ClusterStats(cluster: "svc", registry: registry)
        #expect(ClusterStats.knownCodes.count == 63)
        #expect(svc.code(499) == nil && svc.code(599) == nil && svc.code(429) != nil)
        let worker = WorkerStats(registry: registry)
        for code in [499, 499, 200] { svc.countCode(code, cluster: "svc", in: worker, dynamic: registry.dynamic) }
        svc.countCode(600, cluster: "svc", in: worker, dynamic: registry.dynamic)
        var values = Array(repeating: 0, count: registry.count)
        let counted = worker.snapshot()
        values[try #require(svc.code(200))] = counted[try #require(svc.code(200))]
        let view = StatsView(registry: registry, values: values, filter: nil, usedOnly: false)
        let text = view.text()
        #expect(text.contains("cluster.svc.upstream_rq_499: 2\n") && text.contains("cluster.svc.upstream_rq_200: 1\n"), "\(text)")
        #expect(!text.contains("upstream_rq_600"))
        #expect(view.prometheus().contains(#"envoy_cluster_upstream_rq{envoy_response_code="499",envoy_cluster_name="svc"} 2"#))
    }
}
