import SidecarCore
import SwiftProtobuf
import XDSMessages

/// Route configurations from an `rds.config_source.api_config_source`: a RouteDiscoveryService stream of their
/// own to that source's cluster (as Envoy opens one; envoyproxy/examples' dynamic-config-cp names its routes this
/// way). Each stream is the ADS client speaking one type, installed as RDS from the ADS stream is.
extension SidecarServer {
    /// Opens a stream for each `api_config_source` some route subscription names and none is open for yet, and
    /// asks the open ones for the names wanted now. At start and after each LDS update (a new listener may name
    /// a new source or another route configuration). Readiness waits for the listeners they warm, not for the
    /// streams themselves.
    func startRouteStreams() {
        guard let dynamicConfig, !isDraining else { return }
        for api in dynamicConfig.routeStreams {
            if let open = routeStreamClients.withLockedValue({ $0[api] }) {
                open.refreshNames()
                continue
            }
            guard let cluster = bootstrap.clusters.first(where: { $0.name == api.clusterName }),
                  let address = cluster.endpoints.first?.address else { continue }
            let source = ConfigSource.grpc(api)
            do {
                let client = try ADSClient(
                    host: address.address, port: address.port, tls: cluster.tls, config: api,
                    nodeID: bootstrap.nodeID ?? "", nodeCluster: bootstrap.nodeCluster ?? "", service: .routes,
                    types: [(DiscoveryResources.routeConfiguration, false)], initialFetchTimeout: 0, registry: registry,
                    names: { [weak dynamicConfig] _ in dynamicConfig?.routeNames(from: source) ?? [] },
                    apply: { [weak self] url, resources, version, versions in
                        self?.applyRouteStream(source, url, resources, version, versions)
                    })
                routeStreamClients.withLockedValue { $0[api] = client }
                Log.info("rds: connecting", [("cluster", api.clusterName), ("address", "\(address)")])
                client.start {}
            } catch {
                Log.error("rds: cannot open the route stream", [("cluster", api.clusterName), ("error", "\(error)")])
            }
        }
    }

    /// Installs a response from a route stream; returns why it was refused (the NACK's error_detail).
    private func applyRouteStream(_ source: ConfigSource, _ typeURL: String, _ resources: [Google_Protobuf_Any],
                                  _ versionInfo: String, _ resourceVersions: [String]?) -> String? {
        guard !isDraining, let dynamicConfig else { return nil }
        guard typeURL == DiscoveryResources.routeConfiguration else {
            return "a route stream carries \(DiscoveryResources.routeConfiguration) resources, not \(typeURL)"
        }
        let decoded = Result {
            try XDSResourceDecoding.decode(resources, versionInfo: versionInfo, resourceVersions: resourceVersions,
                                           typeURL: typeURL, what: "RDS", httpFilters: HTTPFilterRegistry.catalog,
                                           decode: RouteConfiguration.decode, name: \.name)
        }
        return dynamicConfig.applyADSRoutes(decoded, from: source) { try install($0, listenerRevisions: $1) }
    }

    func stopRouteStreams() {
        for client in routeStreamClients.withLockedValue({ $0.values }) { client.stop() }
    }
}
