import Foundation
import Testing
@testable import Sidecar
@testable import SidecarCore

/// LDS from a file: listeners added, changed (the new generation takes the socket, the old one drains its
/// connections), refused and removed while the proxy runs, on real loopback sockets.
@Suite(.serialized)
struct ListenerDiscoveryTests {
    /// A listener answering every request with `body` (a direct response), at `address`.
    static func listener(_ name: String, body: String, address: String = "127.0.0.1", port: Int = 0,
                         extra: String = "") -> String {
        """
        - "@type": type.googleapis.com/envoy.config.listener.v3.Listener
          name: \(name)
          address: {socket_address: {address: \(address), port_value: \(port)}}\(extra)
          filter_chains:
          - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: \(name)
                route_config:
                  virtual_hosts:
                  - name: all
                    domains: ["*"]
                    routes:
                    - match: {prefix: "/"}
                      direct_response: {status: 200, body: {inline_string: "\(body)"}}
                http_filters:
                - name: envoy.filters.http.router
                  typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}

        """
    }

    static func file(version: String, _ listeners: [String]) -> String {
        "version_info: \"\(version)\"\n" + (listeners.isEmpty ? "resources: []\n" : "resources:\n" + listeners.joined())
    }

    static func proxyYAML(lds: String, watchedDirectory: String? = nil, staticPort: Int) -> String {
        let watched = watchedDirectory.map { ", watched_directory: {path: \"\($0)\"}" } ?? ""
        return "node: {id: test, cluster: test}\ndynamic_resources:\n  lds_config: {resource_api_version: V3, path_config_source: {path: \"\(lds)\"\(watched)}}\n"
            + ProxyConfig.single(port: staticPort)
    }

    /// The LDS listener's bound port (the static listener is first).
    static func dynamicPort(_ proxy: ProxyHarness, _ index: Int = 1) -> Int? {
        let addresses = proxy.server.listenerAddresses
        return addresses.count > index ? addresses[index].port : nil
    }

    @Test func bootstrapTakesLDSFromAFileOrADSAndNeedsANode() throws {
        let yaml = Self.proxyYAML(lds: "/x/lds.yaml", staticPort: 1)
        let b = try Bootstrap.load(text: yaml)
        #expect(b.dynamicResources?.listeners == .file(FileConfigSource(path: "/x/lds.yaml")))
        let ads = try #require(Self.loadError(yaml.replacingOccurrences(
            of: "path_config_source: {path: \"/x/lds.yaml\"}", with: "ads: {}")), "LDS over ADS without ads_config")
        #expect(ads.path == "dynamic_resources.lds_config" && ads.message.contains("ads_config"))
        let anonymous = try #require(Self.loadError(yaml.replacingOccurrences(
            of: "node: {id: test, cluster: test}\n", with: "")), "LDS without a node")
        #expect(anonymous.path == "dynamic_resources.lds_config" && anonymous.message.contains("node 'id' and 'cluster'"))
    }

    /// Why `text` is not a bootstrap; nil when it is one.
    static func loadError(_ text: String) -> ConfigError? {
        do {
            _ = try Bootstrap.load(text: text)
            return nil
        } catch {
            return error as? ConfigError
        }
    }

    /// `api_config_source` (a RouteDiscoveryService stream of its own) is taken for rds, to a static cluster with an
    /// address; elsewhere, and to other clusters, it is refused by name.
    @Test func routesMayComeFromAnAPIConfigSourceOnly() throws {
        let source = "{resource_api_version: V3, api_config_source: {api_type: GRPC, transport_api_version: V3, "
            + "set_node_on_first_message_only: true, grpc_services: [{envoy_grpc: {cluster_name: backend}}]}}"
        let rds = try RDSConfig.decode(ConfigValue(node: try #require(try ConfigDocument.parse(
            "{route_config_name: dyn, config_source: \(source)}")), path: "rds"))
        guard case .grpc(let api) = rds.source else {
            Issue.record("not a stream: \(rds.source)")
            return
        }
        #expect(api.clusterName == "backend" && api.nodeOnFirstMessageOnly && !api.delta)
        let cds = try #require(Self.loadError(
            "node: {id: test, cluster: test}\ndynamic_resources:\n  cds_config: \(source)\n" + ProxyConfig.single(port: 1)),
            "api_config_source for CDS")
        #expect(cds.path.hasPrefix("dynamic_resources.cds_config.api_config_source") && cds.message.contains("rds only"))
        // The stream's cluster: a static one, with an address.
        let clusters = try Bootstrap.load(text: ProxyConfig.single(port: 1)).clusters
        try Bootstrap.checkStreamCluster("backend", in: clusters) { ConfigError(path: "", line: nil, message: $0) }
        #expect(throws: ConfigError.self) {
            try Bootstrap.checkStreamCluster("nope", in: clusters) { ConfigError(path: "", line: nil, message: $0) }
        }
        let rest = source.replacingOccurrences(of: "api_type: GRPC", with: "api_type: REST")
        #expect(throws: ConfigError.self) {
            _ = try RDSConfig.decode(ConfigValue(node: try #require(try ConfigDocument.parse(
                "{route_config_name: dyn, config_source: \(rest)}")), path: "rds"))
        }
    }

    @Test func listenersFromTheFileStartChangeDrainAndLeave() throws {
        let fixed = try ScriptedBackend { _ in .init(body: Array("fixed".utf8)) }
        defer { fixed.stop() }
        let dir = try ClusterDiscoveryTests.Directory()
        let lds = dir.path + "/lds.yaml"
        try dir.replace("lds.yaml", with: Self.file(version: "1", [Self.listener("dyn", body: "v1")]))
        let proxy = try ProxyHarness(yaml: Self.proxyYAML(lds: lds, staticPort: fixed.port), drainTime: .seconds(30))
        defer { proxy.shutdown() }
        let port = try #require(Self.dynamicPort(proxy))
        #expect(try RawClient.fetch(port: port, "GET", "/").bodyString == "v1")
        #expect(try proxy.fetch("GET", "/").bodyString == "fixed")
        #expect(try proxy.stat("listener_manager.lds.update_success") == 1)
        #expect(try proxy.stat("listener_manager.listener_added") == 2)
        #expect(try proxy.stat("listener_manager.total_listeners_active") == 2)
        #expect(try proxy.admin("GET", "/listeners").bodyString.contains("dyn::127.0.0.1:\(port)"))

        // A keep-alive connection on version 1, then version 2 changes the listener: the new generation takes the
        // same socket (same port); the old connection's next request is still answered by version 1, and closes.
        let old = try RawClient(port: port)
        defer { old.close() }
        try old.send(RawClient.request("GET", "/"))
        #expect(try old.readResponse().bodyString == "v1")
        try dir.replace("lds.yaml", with: Self.file(version: "2", [Self.listener("dyn", body: "v2")]))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("listener_manager.lds.update_success")) == 2 })
        #expect(Self.dynamicPort(proxy) == port)
        #expect(try RawClient.fetch(port: port, "GET", "/").bodyString == "v2")
        #expect(try proxy.stat("listener_manager.listener_modified") == 1)
        #expect(try proxy.stat("listener_manager.total_listeners_draining") == 1)
        try old.send(RawClient.request("GET", "/"))
        let last = try old.readResponse()
        #expect(last.bodyString == "v1")
        #expect(last.header("connection") == "close")
        #expect(old.waitForClose())
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("listener_manager.total_listeners_draining")) == 0 })

        // Version 3 has a field Pilotfish does not know: rejected, version 2 keeps serving, /config_dump says why.
        try dir.replace("lds.yaml", with: Self.file(version: "3", [
            Self.listener("dyn", body: "v3", extra: "\n  bogus_field: 1"),
        ]))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("listener_manager.lds.update_rejected")) == 1 })
        #expect(try RawClient.fetch(port: port, "GET", "/").bodyString == "v2")
        let dump = try proxy.admin("GET", "/config_dump").bodyString
        let json = try #require(try JSONSerialization.jsonObject(with: Data(dump.utf8)) as? [String: Any])
        let configs = try #require(json["configs"] as? [[String: Any]])
        let listeners = try #require(configs.first { ($0["@type"] as? String)?.hasSuffix("ListenersConfigDump") == true })
        #expect(listeners["version_info"] as? String == "2")
        #expect((listeners["static_listeners"] as? [Any])?.count == 1)
        let dynamic = try #require(listeners["dynamic_listeners"] as? [[String: Any]])
        #expect(dynamic.compactMap { $0["name"] as? String } == ["dyn"])
        let active = try #require(dynamic.first?["active_state"] as? [String: Any])
        #expect(active["version_info"] as? String == "2")
        #expect(((active["listener"] as? [String: Any])?["name"] as? String) == "dyn")
        let failure = try #require(dynamic.first?["error_state"] as? [String: Any])
        #expect((failure["details"] as? String)?.contains("resources[0].bogus_field") == true)

        // A static listener's name is refused; so is a second listener at an address another one binds.
        let staticPort = try #require(proxy.server.listenerAddresses.first?.port)
        try dir.replace("lds.yaml", with: Self.file(version: "4", [Self.listener("listener_0", body: "x")]))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("listener_manager.lds.update_rejected")) == 2 })
        try dir.replace("lds.yaml", with: Self.file(version: "5", [
            Self.listener("dyn", body: "v2"), Self.listener("clash", body: "x", port: staticPort),
        ]))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("listener_manager.lds.update_rejected")) == 3 })
        #expect(try RawClient.fetch(port: port, "GET", "/").bodyString == "v2")

        // Version 6 adds a listener on another loopback address and removes dyn: its port stops answering.
        try dir.replace("lds.yaml", with: Self.file(version: "6", [Self.listener("other", body: "other", address: "127.0.0.2")]))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("listener_manager.lds.update_success")) == 3 })
        #expect(try proxy.stat("listener_manager.listener_removed") == 1)
        #expect(try proxy.stat("listener_manager.listener_added") == 3)
        let otherPort = try #require(Self.dynamicPort(proxy))
        let other = try RawClient(port: otherPort, host: "127.0.0.2")
        defer { other.close() }
        try other.send(RawClient.request("GET", "/"))
        #expect(try other.readResponse().bodyString == "other")
        #expect(throws: (any Error).self) { _ = try RawClient.fetch(port: port, "GET", "/") }
        #expect(try proxy.fetch("GET", "/").bodyString == "fixed")
        // Every replaced or removed generation drained and left, the refused updates between them included.
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("listener_manager.total_listeners_draining")) == 0 })
        // (The last one leaves at the next install; none before it is left over.)
        #expect(proxy.server.listenerSet.withLockedValue { s in
            s.draining.count <= 1 && s.draining.allSatisfy { s.drained.contains($0.tag) }
        })
    }

    /// The proxy stops while a replaced listener still drains a connection: the stop does not wait for the
    /// listener's drain time, and nothing is left waiting.
    @Test func stoppingWhileAListenerDrainsEndsCleanly() throws {
        let fixed = try ScriptedBackend { _ in .init(body: Array("fixed".utf8)) }
        defer { fixed.stop() }
        let dir = try ClusterDiscoveryTests.Directory()
        try dir.replace("lds.yaml", with: Self.file(version: "1", [Self.listener("dyn", body: "v1")]))
        let proxy = try ProxyHarness(yaml: Self.proxyYAML(lds: dir.path + "/lds.yaml", staticPort: fixed.port),
                                     drainTime: .seconds(60))
        let port = try #require(Self.dynamicPort(proxy))
        let old = try RawClient(port: port)
        defer { old.close() }
        try old.send(RawClient.request("GET", "/"))
        #expect(try old.readResponse().bodyString == "v1")
        try dir.replace("lds.yaml", with: Self.file(version: "2", [Self.listener("dyn", body: "v2")]))
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("listener_manager.total_listeners_draining")) == 1 })
        let started = Date()
        proxy.server.drainAndStop()
        try proxy.server.waitUntilStopped()
        proxy.markStopped()
        #expect(Date().timeIntervalSince(started) < 10, "the stop waited for the listener's 60 s drain")
    }

    /// `watched_directory`: a Kubernetes ConfigMap volume swaps `..data` to a new directory in one rename.
    @Test func aConfigMapStyleDirectorySwapReplacesTheListeners() throws {
        let fixed = try ScriptedBackend { _ in .init(body: Array("fixed".utf8)) }
        defer { fixed.stop() }
        let dir = try ClusterDiscoveryTests.Directory()
        let fm = FileManager.default
        func publish(_ version: String, body: String) throws {
            let data = dir.path + "/..v\(version)"
            try fm.createDirectory(atPath: data, withIntermediateDirectories: true)
            try Self.file(version: version, [Self.listener("dyn", body: body)])
                .write(toFile: data + "/lds.yaml", atomically: false, encoding: .utf8)
            try fm.createSymbolicLink(atPath: dir.path + "/..data_tmp", withDestinationPath: "..v\(version)")
            guard rename(dir.path + "/..data_tmp", dir.path + "/..data") == 0 else { throw POSIXError(.EIO) }
        }
        try publish("1", body: "one")
        try fm.createSymbolicLink(atPath: dir.path + "/lds.yaml", withDestinationPath: "..data/lds.yaml")
        let proxy = try ProxyHarness(yaml: Self.proxyYAML(lds: dir.path + "/lds.yaml", watchedDirectory: dir.path,
                                                          staticPort: fixed.port))
        defer { proxy.shutdown() }
        let port = try #require(Self.dynamicPort(proxy))
        #expect(try RawClient.fetch(port: port, "GET", "/").bodyString == "one")
        try publish("2", body: "two")
        #expect(ClusterDiscoveryTests.waitUntil { (try? RawClient.fetch(port: port, "GET", "/").bodyString) == "two" })
        // Counted once the install returns, a moment after the workers serve it.
        #expect(ClusterDiscoveryTests.waitUntil { (try? proxy.stat("listener_manager.lds.update_success")) == 2 })
    }
}

/// `--pod-defaults --xds-address`: the pod config takes clusters and listeners from a control plane, and a listener
/// the plane sends at a zero-config listener's address replaces it (and gives it back when removed).
@Suite(.serialized)
struct PodDefaultsControlPlaneTests {
    @Test func thePodConfigNamesThePlaneAndTheNode() throws {
        let xds = try PodDefaults.XDS(
            address: "198.18.0.10:15010",
            nodeID: PodDefaults.XDS.nodeID(environment: ["POD_IP": "198.18.0.5", "POD_NAME": "web-1", "POD_NAMESPACE": "shop"],
                                           hostname: "h"),
            nodeCluster: "pilotfish")
        #expect(xds.nodeID == "sidecar~198.18.0.5~web-1.shop~shop.svc.cluster.local")
        #expect(PodDefaults.XDS.nodeID(environment: ["PILOTFISH_NODE_ID": "n1"], hostname: "h") == "n1")
        #expect(PodDefaults.XDS.nodeID(environment: [:], hostname: "h") == "sidecar~127.0.0.1~h.default~default.svc.cluster.local")
        let b = try Bootstrap.load(text: PodDefaults.yaml(captureMode: .tproxy, xds: xds))
        #expect(b.dynamicResources?.ads?.clusterName == "xds_cluster")
        #expect(b.dynamicResources?.clusters == .ads && b.dynamicResources?.listeners == .ads)
        #expect(b.nodeID == xds.nodeID && b.nodeCluster == "pilotfish")
        let plane = try #require(b.clusters.first { $0.name == "xds_cluster" })
        #expect(plane.endpoints.first?.address.address == "198.18.0.10" && plane.endpoints.first?.address.port == 15010)
        #expect(plane.httpProtocolOptions.http2)
        #expect(throws: ConfigError.self) { try PodDefaults.XDS(address: "istiod", nodeID: "n", nodeCluster: "c") }
    }

    @Test func anLDSListenerAtAFallbackListenersAddressReplacesItUntilRemoved() throws {
        let fixed = try ScriptedBackend { _ in .init(body: Array("fixed".utf8)) }
        defer { fixed.stop() }
        let port = try closedLocalPort()
        let dir = try ClusterDiscoveryTests.Directory()
        try dir.replace("lds.yaml", with: ListenerDiscoveryTests.file(version: "1", []))
        let yaml = ListenerDiscoveryTests.proxyYAML(lds: dir.path + "/lds.yaml", staticPort: fixed.port)
            .replacingOccurrences(of: "name: listener_0\n    address: {socket_address: {address: 127.0.0.1, port_value: 0}}",
                                  with: "name: virtual_outbound\n    address: {socket_address: {address: 127.0.0.1, port_value: \(port)}}")
        var bootstrap = try Bootstrap.load(text: yaml)
        #expect(bootstrap.listeners.map(\.name) == ["virtual_outbound"])
        bootstrap.fallbackListeners = ["virtual_outbound"]
        let server = SidecarServer(bootstrap: bootstrap, concurrency: 1, drainTime: .seconds(2), configSource: yaml)
        try server.start()
        defer { try? server.shutdown() }
        #expect(try RawClient.fetch(port: port, "GET", "/").bodyString == "fixed")

        // The plane's listener at the same address takes the socket; the fallback drains away.
        try dir.replace("lds.yaml", with: ListenerDiscoveryTests.file(version: "2", [
            ListenerDiscoveryTests.listener("virtualOutbound", body: "plane", port: port),
        ]))
        #expect(ClusterDiscoveryTests.waitUntil { (try? RawClient.fetch(port: port, "GET", "/").bodyString) == "plane" })
        #expect(ClusterDiscoveryTests.waitUntil { server.listenerTable.map(\.name) == ["virtualOutbound"] })
        // Removed by the plane: the fallback serves again.
        try dir.replace("lds.yaml", with: ListenerDiscoveryTests.file(version: "3", []))
        #expect(ClusterDiscoveryTests.waitUntil { (try? RawClient.fetch(port: port, "GET", "/").bodyString) == "fixed" })
        // The workers serve the new listener set a moment before the server's own table names it.
        #expect(ClusterDiscoveryTests.waitUntil { server.listenerTable.map(\.name) == ["virtual_outbound"] })
    }
}
