import Foundation
import Testing
@testable import Sidecar
@testable import SidecarCore

/// EDS from a file: an EDS cluster's endpoints, read when the cluster first appears and replaced by each file
/// moved into place, on a running proxy with real loopback sockets.
@Suite(.serialized)
struct EndpointDiscoveryTests {
    typealias Directory = ClusterDiscoveryTests.Directory

    static func assignment(version: String, _ clusters: [(name: String, ports: [Int])]) -> String {
        var out = "version_info: \"\(version)\"\nresources:\n"
        for c in clusters {
            out += """
            - "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
              cluster_name: \(c.name)
              endpoints:
              - lb_endpoints:

            """
            for p in c.ports {
                out += "    - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: \(p)}}}\n"
            }
        }
        return out
    }

    /// One static EDS cluster `svc` whose endpoints are in `eds`, everything routed to it.
    static func proxyYAML(eds: String, serviceName: String? = nil) -> String {
        let service = serviceName.map { ", service_name: \($0)" } ?? ""
        let cluster = "  - {name: svc, connect_timeout: 1s, type: EDS, eds_cluster_config: {eds_config: "
            + "{resource_api_version: V3, path_config_source: {path: \"\(eds)\"}}\(service)}}\n"
        return "node: {id: test, cluster: test}\n"
            + ProxyConfig.yaml(routes: [#"{match: {prefix: "/"}, route: {cluster: svc}}"#], clusters: []) + cluster
    }

    @Test func endpointsFromTheFileServeAndAnUpdateKeepsThePooledConnectionsOfHostsThatStay() throws {
        let a = try TestBackend()
        defer { a.stop() }
        let b = try TestBackend()
        defer { b.stop() }
        let dir = try Directory()
        try dir.replace("eds.yaml", with: Self.assignment(version: "1", [("svc", [a.port])]))
        let proxy = try ProxyHarness(yaml: Self.proxyYAML(eds: dir.path + "/eds.yaml"))
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/1").status == 200)
        #expect(a.requestCount == 1)
        #expect(try proxy.stat("cluster.svc.update_success") == 1)
        #expect(try proxy.stat("cluster.svc.membership_total") == 1)

        // a and b: a's pooled connection stays.
        try dir.replace("eds.yaml", with: Self.assignment(version: "2", [("svc", [a.port, b.port])]))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("cluster.svc.membership_total")) == 2 })
        for i in 0..<4 { #expect(try proxy.fetch("GET", "/r\(i)").status == 200) }
        #expect(a.requestCount == 3 && b.requestCount == 2, "round robin over both hosts")
        #expect(a.acceptedConnections == 1, "the host that stayed kept its pooled connection")

        // Only b. Then, as Envoy: another cluster's assignment, and two assignments, are rejected; a file with
        // none changes nothing.
        try dir.replace("eds.yaml", with: Self.assignment(version: "3", [("svc", [b.port])]))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("cluster.svc.membership_total")) == 1 })
        try dir.replace("eds.yaml", with: Self.assignment(version: "4", [("other", [a.port])]))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("cluster.svc.update_rejected")) == 1 })
        try dir.replace("eds.yaml", with: Self.assignment(version: "5", [("svc", [a.port]), ("svc2", [a.port])]))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("cluster.svc.update_rejected")) == 2 })
        try dir.replace("eds.yaml", with: "version_info: \"6\"\nresources: []\n")
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("cluster.svc.update_empty")) == 1 })
        #expect(try proxy.fetch("GET", "/only-b").status == 200)
        #expect(b.requestCount == 3 && a.requestCount == 3)
        // A hostname is not an endpoint EDS can carry: rejected, b keeps serving.
        try dir.replace("eds.yaml", with: Self.assignment(version: "7", [("svc", [a.port])])
            .replacingOccurrences(of: "address: 127.0.0.1", with: "address: localhost"))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("cluster.svc.update_rejected")) == 3 })
        #expect(try proxy.stat("cluster.svc.update_success") == 4)
        #expect(try proxy.stat("cluster.svc.update_attempt") == 7)
        #expect(try proxy.fetch("GET", "/still-b").status == 200)
        #expect(b.requestCount == 4)
        #expect(b.acceptedConnections == 1)

        // /config_dump shows the assignment with ?include_eds only, as Envoy's does.
        #expect(!(try proxy.admin("GET", "/config_dump").bodyString.contains("EndpointsConfigDump")))
        let dump = try proxy.admin("GET", "/config_dump?include_eds").bodyString
        let json = try #require(try JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any])
        let configs = try #require(json["configs"] as? [[String: Any]])
        let eds = try #require(configs.first { ($0["@type"] as? String)?.hasSuffix("EndpointsConfigDump") == true })
        let entry = try #require((eds["dynamic_endpoint_configs"] as? [[String: Any]])?.first)
        #expect(entry["version_info"] as? String == "3", "the last file that gave svc endpoints")
        #expect((entry["endpoint_config"] as? [String: Any])?["cluster_name"] as? String == "svc")
        #expect(((entry["error_state"] as? [String: Any])?["details"] as? String)?.contains("localhost") == true)
    }

    @Test func serviceNameSelectsTheAssignmentAndAClusterFromCDSGetsItsEndpoints() throws {
        let a = try TestBackend()
        defer { a.stop() }
        let dir = try Directory()
        try dir.replace("eds.yaml", with: Self.assignment(version: "1", [("backend-v1", [a.port])]))
        let proxy = try ProxyHarness(yaml: Self.proxyYAML(eds: dir.path + "/eds.yaml", serviceName: "backend-v1"))
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/").status == 200)
        #expect(a.requestCount == 1)

        let decoded = try Bootstrap.load(text: Self.proxyYAML(eds: "/x/eds.yaml"))
        #expect(decoded.clusters.first?.eds == EDSClusterConfig(
            serviceName: "svc", source: .file(FileConfigSource(path: "/x/eds.yaml"))))
        #expect(throws: ConfigError.self) {
            try Bootstrap.load(text: Self.proxyYAML(eds: "/x").replacingOccurrences(of: "type: EDS, ", with: ""))
        }
    }

    /// CDS brings an EDS cluster while the proxy runs: it starts with its file's endpoints.
    @Test func anEDSClusterFromCDSStartsWithItsEndpoints() throws {
        let a = try TestBackend()
        defer { a.stop() }
        let dir = try Directory()
        try dir.replace("eds.yaml", with: Self.assignment(version: "1", [("svc", [a.port])]))
        let cds = dir.path + "/cds.yaml"
        try dir.replace("cds.yaml", with: "version_info: \"1\"\nresources: []\n")
        let proxy = try ProxyHarness(yaml: ClusterDiscoveryTests.proxyYAML(cds: cds, staticPort: a.port))
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/").status == 503)
        try dir.replace("cds.yaml", with: """
            version_info: "2"
            resources:
            - "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
              name: svc
              type: EDS
              connect_timeout: 1s
              eds_cluster_config: {eds_config: {path_config_source: {path: "\(dir.path)/eds.yaml"}}}

            """)
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("cluster_manager.cds.update_success")) == 2 })
        #expect(try proxy.fetch("GET", "/").status == 200)
        #expect(try proxy.stat("cluster.svc.update_success") == 1)
        #expect(try proxy.stat("cluster.svc.membership_total") == 1)
    }

    /// Two clusters naming one file: as in Envoy, a file with both assignments is refused for each (an EDS file
    /// holds one); with one assignment it is accepted for its cluster and refused for the other. The file is
    /// read once per change.
    @Test func clustersSharingAFileEachNeedItToHoldTheirAssignmentAlone() throws {
        let a = try TestBackend()
        defer { a.stop() }
        let dir = try Directory()
        let eds = dir.path + "/eds.yaml"
        try dir.replace("eds.yaml", with: Self.assignment(version: "1", [("one", [a.port]), ("two", [a.port])]))
        let source = "eds_config: {path_config_source: {path: \"\(eds)\"}}"
        let yaml = "node: {id: test, cluster: test}\n" + ProxyConfig.yaml(
            routes: [#"{match: {prefix: "/one"}, route: {cluster: one}}"#,
                     #"{match: {prefix: "/two"}, route: {cluster: two}}"#], clusters: [])
            + "  - {name: one, connect_timeout: 1s, type: EDS, eds_cluster_config: {\(source)}}\n"
            + "  - {name: two, connect_timeout: 1s, type: EDS, eds_cluster_config: {\(source)}}\n"
        let proxy = try ProxyHarness(yaml: yaml)
        defer { proxy.shutdown() }
        #expect(try proxy.stat("cluster.one.update_rejected") == 1)
        #expect(try proxy.stat("cluster.two.update_rejected") == 1)
        #expect(try proxy.fetch("GET", "/one").status == 503)

        try dir.replace("eds.yaml", with: Self.assignment(version: "2", [("two", [a.port])]))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("cluster.two.update_success")) == 1 })
        #expect(try proxy.stat("cluster.one.update_rejected") == 2)
        #expect(try proxy.stat("cluster.one.update_attempt") == 2 && (try proxy.stat("cluster.two.update_attempt")) == 2)
        #expect(try proxy.fetch("GET", "/two").status == 200)
        #expect(try proxy.fetch("GET", "/one").status == 503)
        #expect(a.requestCount == 1)
    }
}
