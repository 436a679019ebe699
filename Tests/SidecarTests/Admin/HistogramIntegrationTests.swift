import Foundation
import Testing
@testable import Sidecar
@testable import SidecarCore

/// Histograms recorded by the real proxy on real sockets, read back from admin in its three forms.
@Suite(.serialized)
struct HistogramIntegrationTests {
    /// Polls `read` until `done` holds (connections close on the proxy's side a moment after the client sees
    /// the response; flushes come on their own timer). Fails the test if it never does.
    static func eventually<T>(_ read: () throws -> T, _ done: (T) -> Bool) throws -> T {
        var last = try read()
        for _ in 0..<200 where !done(last) {
            Thread.sleep(forTimeInterval: 0.025)
            last = try read()
        }
        #expect(done(last))
        return last
    }

    /// `name{labels} value` lines of a Prometheus page, by series.
    static func series(_ page: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in page.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let v = Double(line[line.index(after: space)...]) else { continue }
            out[String(line[..<space])] = v
        }
        return out
    }

    @Test func requestsAndConnectionsAreTimedIntoEnvoysHistograms() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let yaml = ProxyConfig.single(port: backend.port) + "stats_flush_interval: 0.5s\n"
        let proxy = try ProxyHarness(yaml: yaml)
        defer { proxy.shutdown() }

        // Before any traffic: listed, no values.
        let before = try proxy.admin("GET", "/stats").bodyString
        #expect(before.contains("http.ingress_http.downstream_rq_time: No recorded values\n"))
        #expect(!before.contains("cluster.backend.upstream_rq_time:"))

        // Three quick requests, two the backend holds for 60 ms, and one after which the backend closes its
        // connection (so an upstream connection ends); each on its own downstream connection.
        for _ in 0..<3 { #expect(try proxy.fetch("GET", "/service").status == 200) }
        for _ in 0..<2 { #expect(try proxy.fetch("GET", "/slow?ms=60").status == 200) }
        #expect(try proxy.fetch("GET", "/close-after").status == 200)

        let m = "envoy_http_downstream_rq_time"
        let hcm = #"envoy_http_conn_manager_prefix="ingress_http""#
        let c = #"envoy_cluster_name="backend""#
        let prom = try Self.eventually({ Self.series(try proxy.admin("GET", "/stats/prometheus").bodyString) }) {
            $0["envoy_http_downstream_cx_length_ms_count{\(hcm)}"] == 6
                && $0["envoy_cluster_upstream_cx_length_ms_count{\(c)}"] ?? 0 >= 1
        }
        #expect(prom["\(m)_count{\(hcm)}"] == 6)
        #expect(prom["\(m)_bucket{\(hcm),le=\"+Inf\"}"] == 6)
        // The two held requests took at least 60 ms, so at most four are at or below le="50".
        #expect(prom["\(m)_bucket{\(hcm),le=\"50\"}"] ?? 99 <= 4)
        #expect(prom["\(m)_sum{\(hcm)}"] ?? 0 >= 120)
        #expect(prom["envoy_cluster_upstream_rq_time_count{\(c)}"] == 6)
        #expect(prom["envoy_cluster_upstream_rq_time_bucket{\(c),le=\"50\"}"] ?? 99 <= 4)
        #expect(prom["envoy_cluster_upstream_rq_time_sum{\(c)}"] ?? 0 >= 120)
        // Every upstream connection opened was timed; every one closed was measured.
        let connects = prom["envoy_cluster_upstream_cx_connect_ms_count{\(c)}"] ?? 0
        #expect(connects >= 1)
        #expect(connects == prom["envoy_cluster_upstream_cx_total{\(c)}"])
        #expect(prom["envoy_cluster_upstream_cx_length_ms_count{\(c)}"] == prom["envoy_cluster_upstream_cx_destroy{\(c)}"])

        // Text: the slowest values are at least 60 ms, so P100 of the cumulative part is too.
        let text = try proxy.admin("GET", "/stats").bodyString
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("http.ingress_http.downstream_rq_time: ") })
        let p100 = try #require(line.split(separator: " ").last)  // P100(interval,cumulative)
        let cumulative = try #require(Double(p100.dropLast().split(separator: ",").last ?? ""))
        #expect(cumulative >= 60)

        // The flush that follows the slow requests shows them in the interval part too (until the next flush).
        func upstreamP100() throws -> (cumulative: Double?, interval: Double?) {
            let json = try proxy.admin("GET", "/stats?format=json&filter=upstream_rq_time$").bodyString
            let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
            let stats = object?["stats"] as? [[String: Any]]
            let histograms = stats?.last?["histograms"] as? [String: Any]
            #expect(histograms?["supported_quantiles"] as? [Double] == [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100])
            let computed = histograms?["computed_quantiles"] as? [[String: Any]]
            #expect(computed?.map { $0["name"] as? String } == ["cluster.backend.upstream_rq_time"])
            let values = computed?.first?["values"] as? [[String: Any]]
            #expect(values?.count == 10)
            return (values?.last?["cumulative"] as? Double, values?.last?["interval"] as? Double)
        }
        let p = try Self.eventually(upstreamP100) { ($0.interval ?? 0) >= 60 }
        #expect((p.cumulative ?? 0) >= 60)
    }

    @Test func statsFlushIntervalOutsideEnvoysBoundsIsRefused() throws {
        let base = ProxyConfig.single(port: 1)
        for bad in ["0s", "300s", "0.0005s"] {
            #expect(throws: ConfigError.self) { try Bootstrap.load(text: base + "stats_flush_interval: \(bad)\n") }
        }
        #expect(try Bootstrap.load(text: base + "stats_flush_interval: 0.05s\n").statsFlushInterval == .milliseconds(50))
        #expect(try Bootstrap.load(text: base).statsFlushInterval == .seconds(5))
    }
}
