import Foundation
import Testing
@testable import Sidecar
@testable import SidecarCore

/// CDS from a file: the file's format and errors, and a running proxy that picks up each file moved into place,
/// on real loopback sockets.
@Suite(.serialized)
struct ClusterDiscoveryTests {
    static func cluster(_ name: String, port: Int, extra: String = "") -> String {
        """
        - "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
          name: \(name)
          connect_timeout: 1s
          type: STATIC\(extra)
          load_assignment:
            cluster_name: \(name)
            endpoints:
            - lb_endpoints:
              - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: \(port)}}}

        """
    }

    static func file(version: String, _ clusters: [String]) -> String {
        "version_info: \"\(version)\"\n" + (clusters.isEmpty ? "resources: []\n" : "resources:\n" + clusters.joined())
    }

    /// A temporary directory, removed when the test ends.
    final class Directory {
        let path: String
        init() throws {
            path = NSTemporaryDirectory() + "pilotfish-cds-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }

        /// Writes `text` beside `name` and renames it into place, as Envoy expects updates to arrive.
        func replace(_ name: String, with text: String) throws {
            let staging = path + "/.\(name).\(UUID().uuidString)"
            try text.write(toFile: staging, atomically: false, encoding: .utf8)
            guard rename(staging, path + "/" + name) == 0 else { throw POSIXError(.EIO) }
        }
    }

    static func waitUntil(_ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(5)
        while !condition() {
            if Date() > deadline { return false }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return true
    }

    /// A proxy routing everything to cluster `svc` (which only the CDS file has) and /static to a static one.
    static func proxyYAML(cds: String, staticPort: Int, watchedDirectory: String? = nil) -> String {
        let watched = watchedDirectory.map { ", watched_directory: {path: \"\($0)\"}" } ?? ""
        return "node: {id: test, cluster: test}\ndynamic_resources:\n  cds_config: {resource_api_version: V3, path_config_source: {path: \"\(cds)\"\(watched)}}\n"
            + ProxyConfig.yaml(
                routes: [#"{match: {prefix: "/static"}, route: {cluster: fixed}}"#,
                         #"{match: {prefix: "/"}, route: {cluster: svc}}"#],
                clusters: [("fixed", staticPort)]
            ).replacingOccurrences(of: "name: local_route\n", with: "name: local_route\n            validate_clusters: false\n")
    }

    // MARK: The file

    static func decode(_ text: String) throws -> DiscoveryFile<Cluster> {
        try .decode(text: text, what: "CDS", typeURL: DiscoveryResources.cluster, decode: Cluster.decode, name: \.name)
    }

    @Test func decodesVersionAndClustersAndRefusesWhatItCannotRun() throws {
        let ok = try Self.decode(Self.file(version: "7", [
            Self.cluster("a", port: 1), Self.cluster("b", port: 2),
        ]))
        #expect(ok.versionInfo == "7")
        #expect(ok.resources.map(\.name) == ["a", "b"])
        #expect(ok.resources[1].endpoints.first?.address.port == 2)
        #expect(ok.documents.count == 2 && !ok.documents[0].contains("@type"))

        func error(_ text: String) -> ConfigError? {
            do {
                _ = try Self.decode(text)
                return nil
            } catch let e as ConfigError {
                return e
            } catch {
                return nil
            }
        }
        // A field Pilotfish does not know, in the second resource: named with its path and line.
        let text = Self.file(version: "1", [
            Self.cluster("a", port: 1), Self.cluster("b", port: 2, extra: "\n  bogus_field: 1"),
        ])
        let unknown = try #require(error(text))
        #expect(unknown.path == "resources[1].bogus_field")
        let line = text.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("bogus_field") }
        #expect(unknown.line == line.map { $0 + 1 })
        // A valid Envoy field Pilotfish does not run yet.
        let unsupported = try #require(error(Self.file(version: "1", [
            Self.cluster("a", port: 1, extra: "\n  lrs_server: {}"),
        ])))
        #expect(unsupported.path == "resources[0].lrs_server")
        #expect(unsupported.message.contains("not supported by Pilotfish yet"))
        // Another resource type, a missing @type, a duplicate name, a wrong type_url.
        let listener = Self.file(version: "1", [Self.cluster("a", port: 1)]).replacingOccurrences(
            of: "envoy.config.cluster.v3.Cluster", with: "envoy.config.listener.v3.Listener")
        #expect(error(listener)?.path == "resources[0].@type")
        let untyped = Self.file(version: "1", [Self.cluster("a", port: 1)]).replacingOccurrences(
            of: "- \"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\n  name", with: "- name")
        #expect(error(untyped)?.message.contains("'@type'") == true)
        let twice = try #require(error(Self.file(version: "1", [Self.cluster("a", port: 1), Self.cluster("a", port: 2)])))
        #expect(twice.path == "resources[1].name" && twice.message.contains("duplicate name 'a'"))
        #expect(error("type_url: type.googleapis.com/envoy.config.route.v3.RouteConfiguration\nresources: []\n")?
            .path == "type_url")
        // Errors in several resources are reported together.
        let both = try #require(error(Self.file(version: "1", [
            Self.cluster("a", port: 1, extra: "\n  bogus_one: 1"), Self.cluster("b", port: 2, extra: "\n  bogus_two: 1"),
        ])))
        #expect(both.all.map(\.path) == ["resources[0].bogus_one", "resources[1].bogus_two"])
    }

    @Test func bootstrapReadsTheConfigSourceAndRefusesTransportsItDoesNotRun() throws {
        let yaml = Self.proxyYAML(cds: "/x/cds.yaml", staticPort: 1, watchedDirectory: "/x")
        let b = try Bootstrap.load(text: yaml)
        #expect(b.dynamicResources?.clusters == .file(FileConfigSource(path: "/x/cds.yaml", watchedDirectory: "/x")))
        #expect(b.listeners.count == 1)

        let ads = yaml.replacingOccurrences(of: "path_config_source: {path: \"/x/cds.yaml\", watched_directory: {path: \"/x\"}}",
                                            with: "ads: {}")
        #expect(throws: ConfigError.self) { try Bootstrap.load(text: ads) }
        // CDS needs the node's id and cluster, as in Envoy.
        let anonymous = yaml.replacingOccurrences(of: "node: {id: test, cluster: test}\n", with: "")
        do {
            _ = try Bootstrap.load(text: anonymous)
            Issue.record("CDS without a node was accepted")
        } catch let e as ConfigError {
            #expect(e.path == "dynamic_resources.cds_config" && e.message.contains("node 'id' and 'cluster'"))
        }
        // Routes to clusters only CDS has need validate_clusters: false, as in Envoy.
        let validated = yaml.replacingOccurrences(of: "            validate_clusters: false\n", with: "")
        do {
            _ = try Bootstrap.load(text: validated)
            Issue.record("a route to an unknown cluster was accepted")
        } catch let e as ConfigError {
            #expect(e.message.contains("unknown cluster 'svc'"))
        }
    }

    // MARK: Through the proxy

    @Test func clustersFromTheFileServeAndEachFileMovedIntoPlaceReplacesThem() throws {
        let blue = try ScriptedBackend { _ in .init(body: Array("blue".utf8)) }
        defer { blue.stop() }
        let green = try ScriptedBackend { _ in .init(body: Array("green".utf8)) }
        defer { green.stop() }
        let fixed = try ScriptedBackend { _ in .init(body: Array("fixed".utf8)) }
        defer { fixed.stop() }
        let dir = try Directory()
        let cds = dir.path + "/cds.yaml"
        try dir.replace("cds.yaml", with: Self.file(version: "1", [Self.cluster("svc", port: blue.port)]))

        let proxy = try ProxyHarness(yaml: Self.proxyYAML(cds: cds, staticPort: fixed.port))
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/").bodyString == "blue")
        #expect(try proxy.fetch("GET", "/static").bodyString == "fixed")
        #expect(try proxy.stat("cluster_manager.cds.update_success") == 1)
        #expect(try proxy.stat("cluster_manager.active_clusters") == 2)

        // Version 2: svc moves to green, and a second cluster arrives.
        try dir.replace("cds.yaml", with: Self.file(version: "2", [
            Self.cluster("svc", port: green.port), Self.cluster("extra", port: blue.port),
        ]))
        #expect(Self.waitUntil { (try? proxy.stat("cluster_manager.cds.update_success")) == 2 })
        #expect(try proxy.fetch("GET", "/").bodyString == "green")
        #expect(try proxy.stat("cluster.svc.upstream_rq_total") == 2, "a changed cluster keeps its counters")
        #expect(try proxy.stat("cluster_manager.cluster_modified") == 1)
        #expect(try proxy.stat("cluster_manager.cluster_added") == 3)
        #expect(try proxy.stat("cluster_manager.active_clusters") == 3)

        // Version 3 has a field Pilotfish does not know: rejected, and version 2 keeps serving.
        try dir.replace("cds.yaml", with: Self.file(version: "3", [
            Self.cluster("svc", port: blue.port, extra: "\n  bogus_field: 1"),
        ]))
        #expect(Self.waitUntil { (try? proxy.stat("cluster_manager.cds.update_rejected")) == 1 })
        #expect(try proxy.fetch("GET", "/").bodyString == "green")
        let dump = try proxy.admin("GET", "/config_dump").bodyString
        let json = try #require(try JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any])
        let configs = try #require(json["configs"] as? [[String: Any]])
        let clusters = try #require(configs.first { ($0["@type"] as? String)?.hasSuffix("ClustersConfigDump") == true })
        #expect(clusters["version_info"] as? String == "2")
        #expect((clusters["static_clusters"] as? [Any])?.count == 1)
        let active = try #require(clusters["dynamic_active_clusters"] as? [[String: Any]])
        #expect(active.compactMap { ($0["cluster"] as? [String: Any])?["name"] as? String } == ["svc", "extra"])
        let failure = try #require(active.first?["error_state"] as? [String: Any])
        #expect((failure["details"] as? String)?.contains("resources[0].bogus_field") == true)

        // A static cluster's name is refused; a file that is not YAML is a failure, not a rejection.
        try dir.replace("cds.yaml", with: Self.file(version: "4", [Self.cluster("fixed", port: blue.port)]))
        #expect(Self.waitUntil { (try? proxy.stat("cluster_manager.cds.update_rejected")) == 2 })
        try dir.replace("cds.yaml", with: "resources: [\n")
        #expect(Self.waitUntil { (try? proxy.stat("cluster_manager.cds.update_failure")) == 1 })
        #expect(try proxy.fetch("GET", "/static").bodyString == "fixed")
        #expect(try proxy.fetch("GET", "/").bodyString == "green")

        // Version 5 removes every cluster: a route to svc has no cluster (503, as Envoy's NC).
        try dir.replace("cds.yaml", with: Self.file(version: "5", []))
        #expect(Self.waitUntil { (try? proxy.stat("cluster_manager.cds.update_success")) == 3 })
        #expect(try proxy.fetch("GET", "/").status == 503)
        #expect(try proxy.stat("cluster_manager.cluster_removed") == 2)
        #expect(try proxy.stat("cluster_manager.cds.update_attempt") == 6)
        // Writing the file in place is not a move: it is not read (Envoy's file subscriptions wait for a move).
        try Self.file(version: "6", [Self.cluster("svc", port: blue.port)]).write(toFile: cds, atomically: false, encoding: .utf8)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(try proxy.stat("cluster_manager.cds.update_attempt") == 6)
    }

    /// A CDS file whose cluster cannot be made (its CA file is missing) is rejected at start as it would be later,
    /// not fatal: the proxy starts with its static clusters, as Envoy does.
    @Test func aCDSFileRefusedAtStartLeavesTheProxyRunning() throws {
        let fixed = try ScriptedBackend { _ in .init(body: Array("fixed".utf8)) }
        defer { fixed.stop() }
        let dir = try Directory()
        let tls = """

              transport_socket:
                name: envoy.transport_sockets.tls
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
                  common_tls_context:
                    validation_context: {trusted_ca: {filename: "\(dir.path)/missing-ca.pem"}}
            """
        try dir.replace("cds.yaml", with: Self.file(version: "1", [Self.cluster("svc", port: 1, extra: tls)]))
        let proxy = try ProxyHarness(yaml: Self.proxyYAML(cds: dir.path + "/cds.yaml", staticPort: fixed.port))
        defer { proxy.shutdown() }
        #expect(try proxy.stat("cluster_manager.cds.update_rejected") == 1)
        #expect(try proxy.stat("cluster_manager.active_clusters") == 1)
        #expect(try proxy.fetch("GET", "/static").bodyString == "fixed")
        #expect(try proxy.fetch("GET", "/").status == 503)
    }

    /// `watched_directory`: a Kubernetes ConfigMap volume, where the file is a link through `..data`, and an
    /// update swaps `..data` to a new directory.
    @Test func aWatchedDirectoryPicksUpAConfigMapStyleSwap() throws {
        let blue = try ScriptedBackend { _ in .init(body: Array("blue".utf8)) }
        defer { blue.stop() }
        let green = try ScriptedBackend { _ in .init(body: Array("green".utf8)) }
        defer { green.stop() }
        let dir = try Directory()
        let fm = FileManager.default
        func publish(_ version: String, port: Int) throws {
            let data = dir.path + "/..v\(version)"
            try fm.createDirectory(atPath: data, withIntermediateDirectories: true)
            try Self.file(version: version, [Self.cluster("svc", port: port)])
                .write(toFile: data + "/cds.yaml", atomically: false, encoding: .utf8)
            try fm.createSymbolicLink(atPath: dir.path + "/..data_tmp", withDestinationPath: "..v\(version)")
            guard rename(dir.path + "/..data_tmp", dir.path + "/..data") == 0 else { throw POSIXError(.EIO) }
        }
        try publish("1", port: blue.port)
        try fm.createSymbolicLink(atPath: dir.path + "/cds.yaml", withDestinationPath: "..data/cds.yaml")

        let proxy = try ProxyHarness(yaml: Self.proxyYAML(cds: dir.path + "/cds.yaml", staticPort: blue.port,
                                                          watchedDirectory: dir.path))
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/").bodyString == "blue")
        try publish("2", port: green.port)
        #expect(Self.waitUntil { (try? proxy.stat("cluster_manager.cds.update_success")) == 2 })
        #expect(try proxy.fetch("GET", "/").bodyString == "green")
    }
}
