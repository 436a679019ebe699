import Foundation
import Testing
@testable import Sidecar
@testable import SidecarCore

/// RDS from a file: a connection manager's `rds` route configuration, read at start and replaced by each file
/// moved into place, on a running proxy with real loopback sockets.
@Suite(.serialized)
struct RouteDiscoveryTests {
    typealias Directory = ClusterDiscoveryTests.Directory

    static func routes(version: String, name: String = "dynamic_route", to cluster: String, prefix: String = "/",
                       extra: String = "") -> String {
        """
        version_info: "\(version)"
        resources:
        - "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
          name: \(name)\(extra)
          virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
            - match: {prefix: "\(prefix)"}
              route: {cluster: \(cluster)}

        """
    }

    static func proxyYAML(rds: String, clusters: [(name: String, port: Int)]) -> String {
        "node: {id: test, cluster: test}\n" + ProxyConfig.yaml(clusters: clusters).replacingOccurrences(
            of: #"""
                      route_config:
                        name: local_route
                        virtual_hosts:
                        - name: local_service
                          domains: ["*"]
                          routes: [{match: {prefix: "/"}, route: {cluster: backend}}]

            """#,
            with: """
                      rds:
                        route_config_name: dynamic_route
                        config_source: {resource_api_version: V3, path_config_source: {path: "\(rds)"}}

            """)
    }

    @Test func routesFromTheFileServeAndEachFileMovedIntoPlaceReplacesThem() throws {
        let blue = try ScriptedBackend { _ in .init(body: Array("blue".utf8)) }
        defer { blue.stop() }
        let green = try ScriptedBackend { _ in .init(body: Array("green".utf8)) }
        defer { green.stop() }
        let dir = try Directory()
        try dir.replace("rds.yaml", with: Self.routes(version: "1", to: "blue"))
        let yaml = Self.proxyYAML(rds: dir.path + "/rds.yaml", clusters: [("blue", blue.port), ("green", green.port)])
        #expect(yaml.contains("rds:"))
        let proxy = try ProxyHarness(yaml: yaml)
        defer { proxy.shutdown() }
        let scope = "http.\(ProxyConfig.statPrefix).rds.dynamic_route"
        #expect(try proxy.fetch("GET", "/").bodyString == "blue")
        #expect(try proxy.stat("\(scope).update_success") == 1)

        try dir.replace("rds.yaml", with: Self.routes(version: "2", to: "green"))
        // The count follows the install: wait for it, then look.
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("\(scope).update_success")) == 2 })
        #expect(try proxy.fetch("GET", "/").bodyString == "green")

        // Another route configuration's name, a field Pilotfish does not know, two configurations: rejected, and
        // green keeps serving.
        try dir.replace("rds.yaml", with: Self.routes(version: "3", name: "other", to: "blue"))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("\(scope).update_rejected")) == 1 })
        try dir.replace("rds.yaml", with: Self.routes(version: "4", to: "blue", extra: "\n  bogus_field: 1"))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("\(scope).update_rejected")) == 2 })
        let two = Self.routes(version: "5", to: "blue") + Self.routes(version: "5", name: "second", to: "blue")
            .components(separatedBy: "resources:\n")[1]
        try dir.replace("rds.yaml", with: two)
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("\(scope).update_rejected")) == 3 })
        #expect(try proxy.fetch("GET", "/").bodyString == "green")

        let dump = try proxy.admin("GET", "/config_dump").bodyString
        let json = try #require(try JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any])
        let configs = try #require(json["configs"] as? [[String: Any]])
        let routes = try #require(configs.first { ($0["@type"] as? String)?.hasSuffix("RoutesConfigDump") == true })
        let dynamic = try #require((routes["dynamic_route_configs"] as? [[String: Any]])?.first)
        #expect(dynamic["version_info"] as? String == "2")
        #expect((dynamic["route_config"] as? [String: Any])?["name"] as? String == "dynamic_route")
        let failure = try #require(dynamic["error_state"] as? [String: Any])
        #expect((failure["details"] as? String)?.contains("Unexpected RDS resource length: 2") == true)

        // An empty file changes nothing (update_empty); a route to a cluster that does not exist answers 503.
        try dir.replace("rds.yaml", with: "version_info: \"6\"\nresources: []\n")
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("\(scope).update_empty")) == 1 })
        #expect(try proxy.fetch("GET", "/").bodyString == "green")
        try dir.replace("rds.yaml", with: Self.routes(version: "7", to: "nowhere"))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("\(scope).update_success")) == 4 })
        #expect(try proxy.fetch("GET", "/").status == 503)
    }

    /// A route configuration file that is not there at start: the connection manager has no routes (404, as
    /// Envoy's NR) until one is moved into place.
    @Test func aMissingFileMeansNoRoutesUntilOneArrives() throws {
        let blue = try ScriptedBackend { _ in .init(body: Array("blue".utf8)) }
        defer { blue.stop() }
        let dir = try Directory()
        let proxy = try ProxyHarness(yaml: Self.proxyYAML(rds: dir.path + "/rds.yaml", clusters: [("blue", blue.port)]))
        defer { proxy.shutdown() }
        let scope = "http.\(ProxyConfig.statPrefix).rds.dynamic_route"
        #expect(try proxy.stat("\(scope).update_failure") == 1)
        #expect(try proxy.fetch("GET", "/").status == 404)
        try dir.replace("rds.yaml", with: Self.routes(version: "1", to: "blue"))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.fetch("GET", "/").bodyString) == "blue" })
    }
}
