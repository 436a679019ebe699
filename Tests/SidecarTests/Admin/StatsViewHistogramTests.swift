import Testing
@testable import Sidecar
@testable import SidecarCore

/// Histograms in admin's three `/stats` forms, in the shapes Envoy 1.40 prints.
struct StatsViewHistogramTests {
    /// A registry with one connection manager (`ingress`) and one cluster (`svc`), and a worker to record into.
    static func setUp() -> (StatsRegistry, HTTPStats, ClusterStats, WorkerStats) {
        let registry = StatsRegistry()
        let http = HTTPStats(prefix: "ingress", registry: registry)
        let cluster = ClusterStats(cluster: "svc", registry: registry)
        return (registry, http, cluster, WorkerStats(registry: registry))
    }

    static func view(_ registry: StatsRegistry, _ workers: [WorkerStats], interval: HistogramCounts? = nil,
                     filter: String? = nil, usedOnly: Bool = false) throws -> StatsView {
        var cumulative: HistogramCounts = [:]
        for w in workers { HistogramStatistics.add(w.histogramSnapshot(), into: &cumulative) }
        return StatsView(
            registry: registry, values: Array(repeating: 0, count: registry.count),
            histograms: HistogramsView(cumulative: cumulative, interval: interval),
            filter: try filter.map { try CompiledRegex($0) }, usedOnly: usedOnly)
    }

    @Test func textShowsQuantilesAfterTheCountersAndNoRecordedValuesWhenEmpty() throws {
        let (registry, http, _, w) = Self.setUp()
        for v in [7, 7, 7] { w.record(http.rqTime, milliseconds: v) }
        let text = try Self.view(registry, [w]).text()
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.contains(
            "http.ingress.downstream_rq_time: P0(nan,7.025) P25(nan,7.025) P50(nan,7.05) P75(nan,7.075) "
                + "P90(nan,7.075) P95(nan,7.075) P99(nan,7.075) P99.5(nan,7.075) P99.9(nan,7.075) P100(nan,7.075)"))
        #expect(lines.contains("http.ingress.downstream_cx_length_ms: No recorded values"))
        #expect(lines.contains("cluster.svc.upstream_cx_connect_ms: No recorded values"))
        // upstream_rq_time appears once it has a value, as Envoy creates it on first use.
        #expect(!text.contains("cluster.svc.upstream_rq_time:"))
        // Histograms come after every counter and gauge, sorted by name.
        let firstHistogram = try #require(lines.firstIndex { $0.contains(": P0(") || $0.hasSuffix("No recorded values") })
        #expect(lines[firstHistogram...].allSatisfy { $0.contains(": P0(") || $0.hasSuffix("No recorded values") })
        #expect(lines[..<firstHistogram].allSatisfy { Int($0.split(separator: " ").last ?? "") != nil })
        let names = lines[firstHistogram...].map { $0.split(separator: ":")[0] }
        #expect(names == names.sorted())
    }

    @Test func workersAreMergedAndTheIntervalIsShownBesideTheCumulative() throws {
        let (registry, _, cluster, a) = Self.setUp()
        let b = WorkerStats(registry: registry)
        a.record(cluster.rqTime, milliseconds: 1)
        b.record(cluster.rqTime, milliseconds: 40)
        // The last flush interval saw only the 40 ms value.
        let interval = b.histogramSnapshot()
        let text = try Self.view(registry, [a, b], interval: interval, filter: "upstream_rq_time$").text()
        #expect(text == "cluster.svc.upstream_rq_time: P0(40.5,1.05) P25(40.5,1.05) P50(40.5,1.05) P75(40.5,40.5) "
            + "P90(40.5,40.5) P95(40.5,40.5) P99(40.5,40.5) P99.5(40.5,40.5) P99.9(40.5,40.5) P100(40.5,40.5)\n")
    }

    @Test func jsonAppendsEnvoysHistogramsObjectToTheStatsList() throws {
        let (registry, http, _, w) = Self.setUp()
        w.record(http.rqTime, milliseconds: 40)
        // A flush has happened, and nothing was recorded in its interval.
        let json = try Self.view(registry, [w], interval: [:], filter: "downstream_rq_time$").json()
        let forty = Array(repeating: #"{"cumulative":40.5,"interval":null}"#, count: 10).joined(separator: ",")
        #expect(json == #"{"stats":[{"histograms":{"supported_quantiles":[0,25,50,75,90,95,99,99.5,99.9,100],"#
            + #""computed_quantiles":[{"name":"http.ingress.downstream_rq_time","values":["# + forty + "]}]}}]}\n")
        // An empty histogram: every value null. No histogram matched: no histograms object at all.
        let empty = try Self.view(registry, [w], filter: "connect_ms").json()
        #expect(empty.contains(#"{"name":"cluster.svc.upstream_cx_connect_ms","values":[{"cumulative":null,"interval":null},"#))
        #expect(try Self.view(registry, [w], filter: "no_such_stat").json() == "{\"stats\":[]}\n")
    }

    @Test func prometheusShowsRealHistogramsWithEnvoysBoundsAndLabels() throws {
        let (registry, http, _, w) = Self.setUp()
        for v in [0, 3, 3, 120, 7_200_000] { w.record(http.rqTime, milliseconds: v) }
        let text = try Self.view(registry, [w], filter: "http.ingress.downstream_rq_time$").prometheus()
        let m = "envoy_http_downstream_rq_time"
        let label = #"envoy_http_conn_manager_prefix="ingress""#
        let cumulative = [1, 1, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4]
        let bounds = ["0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000", "30000",
                      "60000", "300000", "600000", "1800000", "3600000"]
        var expected = "# HELP \(m) Envoy histogram http.downstream_rq_time (ms)\n# TYPE \(m) histogram\n"
        for (b, n) in zip(bounds, cumulative) { expected += "\(m)_bucket{\(label),le=\"\(b)\"} \(n)\n" }
        expected += "\(m)_bucket{\(label),le=\"+Inf\"} 5\n\(m)_sum{\(label)} 7200126\n\(m)_count{\(label)} 5\n"
        #expect(text == expected)
    }

    @Test func prometheusPutsHistogramsAfterCountersAndGivesEveryFamilyHelpAndType() throws {
        let (registry, http, _, w) = Self.setUp()
        w.record(http.cxLengthMs, milliseconds: 12)
        let lines = try Self.view(registry, [w]).prometheus().split(separator: "\n").map(String.init)
        let typeLines = lines.filter { $0.hasPrefix("# TYPE ") }
        let helpLines = lines.filter { $0.hasPrefix("# HELP ") }
        #expect(typeLines.count == helpLines.count)
        #expect(zip(helpLines, typeLines).allSatisfy { $0.split(separator: " ")[2] == $1.split(separator: " ")[2] })
        let kinds = typeLines.map { $0.split(separator: " ")[3] }
        let firstHistogram = try #require(kinds.firstIndex(of: "histogram"))
        #expect(kinds[firstHistogram...].allSatisfy { $0 == "histogram" })
        #expect(kinds[..<firstHistogram].allSatisfy { $0 == "counter" || $0 == "gauge" })
        #expect(typeLines.contains("# TYPE envoy_cluster_upstream_cx_length_ms histogram"))
        #expect(!typeLines.contains("# TYPE envoy_cluster_upstream_rq_time histogram"))  // lazy, still empty
    }

    @Test func usedOnlyLeavesOutHistogramsWithoutValues() throws {
        let (registry, http, _, w) = Self.setUp()
        w.record(http.cxLengthMs, milliseconds: 12)
        let view = try Self.view(registry, [w], usedOnly: true)
        #expect(view.histogramRows.map(\.name) == ["http.ingress.downstream_cx_length_ms"])
    }

    @Test func numbersPrintAsEnvoyPrintsDoubles() {
        #expect(StatsView.number(0) == "0")
        #expect(StatsView.number(40.5) == "40.5")
        #expect(StatsView.number(1250) == "1250")
        #expect(StatsView.number(1.0333333333333334) == "1.0333333333333334")
        #expect(StatsView.number(99.5) == "99.5")
    }
}
