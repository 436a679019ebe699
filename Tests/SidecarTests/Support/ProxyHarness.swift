import Foundation
import NIOCore
@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// Envoy v3 bootstrap text for the integration tests: one listener on 127.0.0.1:0 with stat prefix
/// `ingress_http`, the admin on 127.0.0.1:0, and STATIC clusters on loopback.
enum ProxyConfig {
    static let statPrefix = "ingress_http"

    /// A route that sends everything to `backend`.
    static let catchAll = #"{match: {prefix: "/"}, route: {cluster: backend}}"#

    /// `routes` are YAML flow mappings (one per route), `clusters` name → loopback port, `hcmExtra` extra
    /// HttpConnectionManager fields as flow `key: value` lines.
    /// `httpFilters`: entries before the router, each a YAML flow mapping.
    static func yaml(routes: [String] = [catchAll], clusters: [(name: String, port: Int)],
                     hcmExtra: [String] = [], connectTimeout: String = "1s", httpFilters: [String] = [],
                     virtualHostExtra: [String] = []) -> String {
        let hcm = hcmExtra.map { "          \($0)\n" }.joined()
        let filters = httpFilters.map { "          - \($0)\n" }.joined()
        let vhExtra = virtualHostExtra.map { "              \($0)\n" }.joined()
        let clusterLines = clusters.map { c in
            "  - {name: \(c.name), connect_timeout: \(connectTimeout), type: STATIC, lb_policy: ROUND_ROBIN, "
                + "load_assignment: {cluster_name: \(c.name), endpoints: [{lb_endpoints: [{endpoint: {address: "
                + "{socket_address: {address: 127.0.0.1, port_value: \(c.port)}}}}]}]}}\n"
        }.joined()
        return """
        admin:
          address: {socket_address: {address: 127.0.0.1, port_value: 0}}
        static_resources:
          listeners:
          - name: listener_0
            address: {socket_address: {address: 127.0.0.1, port_value: 0}}
            filter_chains:
            - filters:
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                  stat_prefix: \(statPrefix)
                  codec_type: AUTO

        """ + hcm + """
                  route_config:
                    name: local_route
                    virtual_hosts:
                    - name: local_service
                      domains: ["*"]
                      routes: [\(routes.joined(separator: ", "))]

        """ + vhExtra + """
                  http_filters:

        """ + filters + """
                  - name: envoy.filters.http.router
                    typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
          clusters:

        """ + clusterLines
    }

    /// Everything to one cluster `backend` on `port`.
    static func single(port: Int, routes: [String] = [catchAll], hcmExtra: [String] = []) -> String {
        yaml(routes: routes, clusters: [("backend", port)], hcmExtra: hcmExtra)
    }
}

/// A running `SidecarServer` on ephemeral ports, with helpers for its listener and admin.
final class ProxyHarness {
    let server: SidecarServer
    let port: Int
    let adminPort: Int
    private var stopped = false

    init(yaml: String, drainTime: TimeAmount = .seconds(5), concurrency: Int = 1) throws {
        let bootstrap = try Bootstrap.load(text: yaml)
        server = SidecarServer(bootstrap: bootstrap, concurrency: concurrency, drainTime: drainTime, configSource: yaml)
        do {
            try server.start()
        } catch {
            try? server.shutdown()
            throw error
        }
        port = server.listenerAddresses.first?.port ?? 0
        adminPort = server.adminAddress?.port ?? 0
    }

    /// Stops the server and waits for it (idempotent; for `defer`).
    func shutdown() {
        guard !stopped else { return }
        stopped = true
        try? server.shutdown()
    }

    /// Marks the server as stopped by the test itself (after `waitUntilStopped`).
    func markStopped() { stopped = true }

    func client(timeout: Double = 5) throws -> RawClient { try RawClient(port: port, timeout: timeout) }

    /// One request on its own connection to the listener.
    func fetch(_ method: String = "GET", _ target: String, host: String = "example.com",
               headers: [String] = []) throws -> RawResponse {
        try RawClient.fetch(port: port, method, target, host: host, headers: headers)
    }

    /// One request to the admin listener.
    func admin(_ method: String = "GET", _ target: String) throws -> RawResponse {
        try RawClient.fetch(port: adminPort, method, target, host: "127.0.0.1")
    }

    /// Admin `/stats` text as `name → value`.
    func stats() throws -> [String: String] {
        let response = try admin("GET", "/stats")
        var out: [String: String] = [:]
        for line in response.bodyString.split(separator: "\n") {
            guard let sep = line.range(of: ": ") else { continue }
            out[String(line[..<sep.lowerBound])] = String(line[sep.upperBound...])
        }
        return out
    }

    /// One counter or gauge from `/stats`, nil when absent.
    func stat(_ name: String) throws -> Int? {
        try stats()[name].flatMap { Int($0) }
    }

    /// A registered stat's value summed over workers, shown by admin or not (a removed cluster's stats are left
    /// out of /stats, as Envoy drops them, while its last connections drain).
    func registeredStat(_ name: String) throws -> Int? {
        let table = server.registry.snapshot
        guard let slot = (0..<table.count).first(where: { table.name($0) == name }) else { return nil }
        let values = server.registry.resolvingComputed(try server.collectStats().wait())
        return slot < values.count ? values[slot] : nil
    }
}
