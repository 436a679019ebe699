import Dispatch
import Foundation
import NIOCore
import Testing
@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// Installing a config snapshot on a running proxy, on real loopback sockets: a stream keeps the snapshot it
/// started with; the next one takes the new one.
@Suite(.serialized)
struct ConfigSnapshotInstallTests {
    private static func route(to cluster: String) -> String {
        #"{match: {prefix: "/"}, route: {cluster: "# + cluster + "}}"
    }

    private static func waitUntil(_ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(5)
        while !condition() {
            if Date() > deadline { return false }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return true
    }

    @Test func inFlightRequestFinishesOnItsSnapshotWhileTheNextTakesTheNewOne() throws {
        // blue holds its first answer until the test lets it go.
        let release = DispatchSemaphore(value: 0)
        let blue = try ScriptedBackend { request in
            if request.uri == "/first" { _ = release.wait(timeout: .now() + 10) }
            return .init(body: Array("blue".utf8))
        }
        var released = false
        defer {
            if !released { release.signal() }
            blue.stop()
        }
        let green = try ScriptedBackend { _ in .init(body: Array("green".utf8)) }
        defer { green.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.yaml(
            routes: [Self.route(to: "blue")], clusters: [("blue", blue.port), ("green", green.port)]))
        defer { proxy.shutdown() }

        let first = try proxy.client()
        try first.send(RawClient.request("GET", "/first"))
        #expect(Self.waitUntil { blue.requests.count == 1 }, "the first request never reached blue")

        // Snapshot 2: everything to green, and blue is gone.
        try proxy.server.install(Bootstrap.load(text: ProxyConfig.yaml(
            routes: [Self.route(to: "green")], clusters: [("green", green.port)])))
        #expect(proxy.server.snapshot.version == 2)

        // A new stream starts on snapshot 2 while the first is still waiting for blue.
        let second = try proxy.fetch("GET", "/second")
        #expect(second.status == 200)
        #expect(second.bodyString == "green")
        #expect(green.requests.map(\.uri) == ["/second"])

        // The first stream finishes on snapshot 1: blue answers it, through blue's (now draining) pool.
        release.signal()
        released = true
        let firstResponse = try first.readResponse()
        #expect(firstResponse.status == 200)
        #expect(firstResponse.bodyString == "blue")

        // The next request on the same downstream connection is a new stream: snapshot 2.
        try first.send(RawClient.request("GET", "/third"))
        let third = try first.readResponse()
        #expect(third.bodyString == "green")
        #expect(blue.requests.map(\.uri) == ["/first"])
        #expect(green.requests.map(\.uri) == ["/second", "/third"])

        // blue's connection went back to a draining pool and was closed instead of kept idle. Its stats are
        // counted but no longer shown, as Envoy drops a removed cluster's.
        #expect(Self.waitUntil { (try? proxy.registeredStat("cluster.blue.upstream_cx_destroy")) == 1 })
        #expect(try proxy.registeredStat("cluster.blue.upstream_cx_active") == 0)
        #expect(try proxy.registeredStat("cluster.blue.upstream_rq_completed") == 1)
        #expect(try proxy.stat("cluster.blue.upstream_rq_completed") == nil)
        #expect(try proxy.stat("cluster.green.upstream_rq_completed") == 2)
        let clusters = try proxy.admin("GET", "/clusters").bodyString
        #expect(clusters.contains("green::observability_name::green"))
        #expect(!clusters.contains("blue::"))
    }

    /// The route is chosen when the head arrives; a fault delay then holds the stream before the router acts. A
    /// snapshot installed meanwhile (where the route's cluster is gone and another sits at its slot) must not
    /// change where the held stream goes.
    @Test func streamHeldBetweenRoutingAndForwardingUsesTheClusterOfItsOwnSnapshot() throws {
        let blue = try ScriptedBackend { _ in .init(body: Array("blue".utf8)) }
        defer { blue.stop() }
        let green = try ScriptedBackend { _ in .init(body: Array("green".utf8)) }
        defer { green.stop() }
        let fault = #"{name: envoy.filters.http.fault, typed_config: {"@type": "#
            + #"type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, "#
            + #"delay: {fixed_delay: 1s, percentage: {numerator: 100}}}}"#
        let proxy = try ProxyHarness(yaml: ProxyConfig.yaml(
            routes: [Self.route(to: "blue")], clusters: [("blue", blue.port), ("green", green.port)],
            httpFilters: [fault]))
        defer { proxy.shutdown() }

        let held = try proxy.client()
        try held.send(RawClient.request("GET", "/held"))
        #expect(Self.waitUntil { (try? proxy.stat("http.ingress_http.fault.delays_injected")) == 1 })
        try proxy.server.install(Bootstrap.load(text: ProxyConfig.yaml(
            routes: [Self.route(to: "green")], clusters: [("green", green.port)], httpFilters: [fault])))

        let response = try held.readResponse()
        #expect(response.bodyString == "blue")
        #expect(blue.requests.map(\.uri) == ["/held"])
        #expect(green.requests.isEmpty)
    }

    @Test func clusterKeptByANewSnapshotKeepsItsPooledConnection() throws {
        let a = try TestBackend()
        defer { a.stop() }
        let b = try TestBackend()
        defer { b.stop() }
        let clusters = [(name: "a", port: a.port), (name: "b", port: b.port)]
        let proxy = try ProxyHarness(yaml: ProxyConfig.yaml(routes: [Self.route(to: "a")], clusters: clusters))
        defer { proxy.shutdown() }

        #expect(try proxy.fetch("GET", "/1").status == 200)
        try proxy.server.install(Bootstrap.load(text: ProxyConfig.yaml(routes: [Self.route(to: "b")], clusters: clusters)))
        #expect(try proxy.fetch("GET", "/2").status == 200)
        try proxy.server.install(Bootstrap.load(text: ProxyConfig.yaml(routes: [Self.route(to: "a")], clusters: clusters)))
        #expect(try proxy.fetch("GET", "/3").status == 200)

        #expect(a.requestCount == 2 && b.requestCount == 1)
        // Cluster a was in every snapshot with the same config: its pooled connection served both its requests.
        #expect(a.acceptedConnections == 1)
        #expect(try proxy.stat("cluster.a.upstream_cx_total") == 1)
    }

    @Test func clusterRemovedAndAddedBackServesAgain() throws {
        let a = try TestBackend()
        defer { a.stop() }
        let b = try TestBackend()
        defer { b.stop() }
        let both = [(name: "a", port: a.port), (name: "b", port: b.port)]
        let proxy = try ProxyHarness(yaml: ProxyConfig.yaml(routes: [Self.route(to: "a")], clusters: both))
        defer { proxy.shutdown() }

        #expect(try proxy.fetch("GET", "/1").status == 200)
        try proxy.server.install(Bootstrap.load(text: ProxyConfig.yaml(
            routes: [Self.route(to: "b")], clusters: [(name: "b", port: b.port)])))
        #expect(try proxy.fetch("GET", "/2").status == 200)
        // a's idle pooled connection was closed when a left the config.
        #expect(Self.waitUntil { (try? proxy.registeredStat("cluster.a.upstream_cx_active")) == 0 })
        #expect(try proxy.stat("cluster.a.upstream_rq_total") == nil, "a removed cluster's stats leave /stats")
        try proxy.server.install(Bootstrap.load(text: ProxyConfig.yaml(routes: [Self.route(to: "a")], clusters: both)))
        #expect(try proxy.fetch("GET", "/3").status == 200)
        #expect(a.requestCount == 2 && b.requestCount == 1)
        #expect(a.acceptedConnections == 2)
        #expect(try proxy.stat("cluster.a.membership_total") == 1)
    }

    /// A removed cluster's health checks stop; added back, it is checked again from the start (its hosts wait for
    /// their first passing check, as a new cluster's do).
    @Test func healthChecksStopWithTheirClusterAndStartAgainWithIt() throws {
        let a = try TestBackend()
        defer { a.stop() }
        let b = try TestBackend()
        defer { b.stop() }
        let hc = "health_checks: [{timeout: 1s, interval: 0.05s, no_traffic_interval: 0.05s, unhealthy_threshold: 1, "
            + "healthy_threshold: 1, "
            + #"http_health_check: {path: "/"}}]"#
        func yaml(_ clusters: [(name: String, port: Int)], to cluster: String) -> String {
            ProxyConfig.yaml(routes: [Self.route(to: cluster)], clusters: clusters).replacingOccurrences(
                of: "{name: checked, connect_timeout: 1s, type: STATIC, ",
                with: "{name: checked, connect_timeout: 1s, type: STATIC, \(hc), ")
        }
        let both = [(name: "checked", port: a.port), (name: "plain", port: b.port)]
        #expect(yaml(both, to: "checked").contains("http_health_check"))
        let proxy = try ProxyHarness(yaml: yaml(both, to: "checked"))
        defer { proxy.shutdown() }
        let healthy = "checked::127.0.0.1:\(a.port)::health_flags::healthy"
        func clusters() -> String { (try? proxy.admin("GET", "/clusters").bodyString) ?? "" }
        func attempts() -> Int { (try? proxy.stat("cluster.checked.health_check.attempt")) ?? -1 }

        #expect(Self.waitUntil { clusters().contains(healthy) })
        let checked = attempts()
        #expect(Self.waitUntil { attempts() >= checked + 2 }, "the cluster is not being checked")
        try proxy.server.install(Bootstrap.load(text: yaml([(name: "plain", port: b.port)], to: "plain")))
        #expect(!clusters().contains("checked::"))
        Thread.sleep(forTimeInterval: 0.1)
        let stoppedAt = attempts()
        Thread.sleep(forTimeInterval: 0.3)
        #expect(attempts() == stoppedAt, "the removed cluster is still health checked")

        try proxy.server.install(Bootstrap.load(text: yaml(both, to: "checked")))
        #expect(Self.waitUntil { clusters().contains(healthy) }, "the cluster added back was never checked healthy")
        #expect(attempts() > stoppedAt)
        #expect(try proxy.fetch("GET", "/").status == 200)
    }

    /// A cluster the running proxy did not start with gets stats (every worker makes room for them) and serves;
    /// a changed cluster (another connect timeout) gets new pools and keeps counting into its stats.
    @Test func newAndChangedClustersServeAndCountWhileTheProxyRuns() throws {
        let a = try TestBackend()
        defer { a.stop() }
        let c = try TestBackend()
        defer { c.stop() }
        let clusters = [(name: "a", port: a.port)]
        let proxy = try ProxyHarness(yaml: ProxyConfig.yaml(routes: [Self.route(to: "a")], clusters: clusters),
                                     concurrency: 2)
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/1").status == 200)
        #expect(try proxy.stat("cluster.a.upstream_rq_total") == 1)

        try proxy.server.install(Bootstrap.load(text: ProxyConfig.yaml(
            routes: [Self.route(to: "c")], clusters: clusters + [(name: "c", port: c.port)])))
        for i in 0..<4 { #expect(try proxy.fetch("GET", "/c\(i)").status == 200) }
        #expect(c.requestCount == 4)
        #expect(try proxy.stat("cluster.c.upstream_rq_total") == 4)
        #expect(try proxy.stat("cluster.c.membership_total") == 1)
        #expect(try proxy.admin("GET", "/clusters").bodyString.contains("c::127.0.0.1:\(c.port)::rq_total::"))

        // a with another connect timeout: a new cluster object (a new pool), the same counters.
        try proxy.server.install(Bootstrap.load(text: ProxyConfig.yaml(
            routes: [Self.route(to: "a")], clusters: clusters, connectTimeout: "2s")))
        #expect(try proxy.fetch("GET", "/2").status == 200)
        #expect(a.acceptedConnections == 2)
        #expect(try proxy.stat("cluster.a.upstream_rq_total") == 2)
        #expect(try proxy.stat("cluster.a.upstream_cx_total") == 2)
        #expect(proxy.server.snapshot.version == 3)
    }

    /// A snapshot with another listener starts it beside the running one (what LDS does); one with a listener
    /// at an address another listener binds is refused and changes nothing.
    @Test func installStartsANewListenerAndRefusesAnAddressClash() throws {
        let a = try TestBackend()
        defer { a.stop() }
        let clusters = [(name: "a", port: a.port)]
        let proxy = try ProxyHarness(yaml: ProxyConfig.yaml(clusters: clusters).replacingOccurrences(
            of: "cluster: backend", with: "cluster: a"))
        defer { proxy.shutdown() }

        let twoListeners = ProxyConfig.yaml(routes: [Self.route(to: "a")], clusters: clusters)
        let listener = twoListeners[twoListeners.range(of: "  - name: listener_0")!.lowerBound..<twoListeners.range(of: "  clusters:")!.lowerBound]
        func withSecond(port: Int) -> String {
            twoListeners.replacingOccurrences(of: "  clusters:", with: listener.replacingOccurrences(
                of: "listener_0", with: "listener_1").replacingOccurrences(of: "port_value: 0", with: "port_value: \(port)")
                + "  clusters:")
        }
        let extra = withSecond(port: 0)
        #expect(try Bootstrap.load(text: extra).listeners.count == 2)
        try proxy.server.install(Bootstrap.load(text: extra))
        #expect(proxy.server.snapshot.version == 2)
        let ports = proxy.server.listenerAddresses.compactMap(\.port)
        #expect(ports.count == 2 && ports[0] == proxy.port)
        #expect(try RawClient.fetch(port: ports[1], "GET", "/").status == 200)
        #expect(try proxy.fetch("GET", "/").status == 200)

        // listener_1 moves to listener_0's port.
        let clash = try Bootstrap.load(text: withSecond(port: proxy.port))
        #expect(throws: (any Error).self) { try proxy.server.install(clash) }
        #expect(proxy.server.snapshot.version == 2)
        #expect(proxy.server.listenerAddresses.compactMap(\.port) == ports)
        #expect(try proxy.fetch("GET", "/").status == 200)
    }

    @Test func routeTargetsAreResolvedToSlotsWhenTheSnapshotIsBuilt() throws {
        let yaml = ProxyConfig.yaml(
            routes: [
                #"{match: {prefix: "/w"}, route: {weighted_clusters: {clusters: [{name: b, weight: 1}]}}}"#,
                #"{match: {prefix: "/h"}, route: {cluster_header: x-cluster}}"#,
                #"{match: {prefix: "/"}, route: {cluster: a, request_mirror_policies: [{cluster: b}]}}"#,
            ],
            clusters: [("a", 1), ("b", 2)])
        let bootstrap = try Bootstrap.load(text: yaml)
        let manager = ClusterManager(registry: StatsRegistry())
        let snapshot = try ConfigSnapshot(
            version: 1, bootstrap: bootstrap, clusters: manager.infos(for: bootstrap.clusters), runtime: Runtime())
        let table = snapshot.routeTables[0].config
        func target(_ path: String, _ headers: [(String, String)] = []) -> ForwardTarget? {
            guard case .forward(let t) = table.route(RouteRequest(method: "GET", path: path, authority: "x",
                                                                  headers: .init(headers))) else { return nil }
            return t
        }
        let a = try #require(snapshot.slot(named: "a"))
        let b = try #require(snapshot.slot(named: "b"))
        #expect(target("/")?.clusterSlot == a)
        #expect(target("/")?.mirrorPolicies.first?.slot == b)
        #expect(target("/w")?.clusterSlot == b)
        // cluster_header names its cluster per request.
        #expect(target("/h", [("x-cluster", "a")])?.clusterSlot == nil)
        #expect(snapshot[a].name == "a" && snapshot[b].name == "b")

        // Unchanged clusters keep their info in the next snapshot once it is installed; a changed one gets a new
        // info.
        #expect(manager.infos(for: bootstrap.clusters)[0] !== snapshot.clusters[0], "not installed yet")
        manager.commit(snapshot.clusters)
        let again = manager.infos(for: bootstrap.clusters)
        #expect(again[0] === snapshot.clusters[0] && again[1] === snapshot.clusters[1])
        var changed = bootstrap.clusters[0]
        changed.connectTimeout = .seconds(9)
        let next = manager.infos(for: [changed])
        #expect(next[0] !== snapshot.clusters[0])
        #expect(next[0].stats.rqTotal == snapshot.clusters[0].stats.rqTotal,
                "a changed cluster keeps counting into its stats")
    }
}
