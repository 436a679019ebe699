import SidecarCore
import SwiftProtobuf
import XDSMessages

/// Discovery streams of their own, to an `api_config_source`'s cluster: route configurations (a
/// RouteDiscoveryService stream; envoyproxy/examples' dynamic-config-cp names its routes this way) and secrets (a
/// SecretDiscoveryService stream; Istio's proxies take their certificates so). One stream per service and source,
/// as Envoy opens them; each is the ADS client speaking one type, its responses installed as the ADS stream's are.
extension SidecarServer {
    /// A stream's identity: what it speaks, and to which source.
    struct SourceStream: Hashable, Sendable {
        var service: ADSClient.Service
        var api: ADSConfig
    }

    /// Opens a stream for each `api_config_source` some route subscription or TLS context names and none is open
    /// for yet, and asks the open ones for the names wanted now. At start and after each update that may name
    /// new ones (LDS, CDS). Readiness waits for the listeners and secrets they bring, not for the streams.
    func startSourceStreams() {
        guard !isDraining else { return }
        var wanted: [SourceStream] = []
        for api in dynamicConfig?.routeStreams ?? [] { wanted.append(SourceStream(service: .routes, api: api)) }
        var secretSources = Set<ADSConfig>()
        for ref in wantedSecrets() {
            if case .grpc(let api) = ref.source, secretSources.insert(api).inserted {
                wanted.append(SourceStream(service: .secrets, api: api))
            }
        }
        for stream in wanted {
            if let open = sourceStreamClients.withLockedValue({ $0[stream] }) {
                open.refreshNames()
                continue
            }
            guard let cluster = bootstrap.clusters.first(where: { $0.name == stream.api.clusterName }),
                  let address = cluster.endpoints.first?.address else { continue }
            let source = ConfigSource.grpc(stream.api)
            let what = stream.service == .routes ? "rds" : "sds"
            let typeURL = stream.service == .routes ? DiscoveryResources.routeConfiguration : DiscoveryResources.secret
            let names: @Sendable (String) -> Set<String>
            if stream.service == .routes {
                names = { [weak dynamicConfig] _ in dynamicConfig?.routeNames(from: source) ?? [] }
            } else {
                names = { [weak self] _ in
                    guard let self else { return [] }
                    return Set(self.wantedSecrets(from: source).map(\.name))
                }
            }
            do {
                let client = try ADSClient(
                    host: address.address, port: address.port, tls: cluster.tls, config: stream.api,
                    nodeID: bootstrap.nodeID ?? "", nodeCluster: bootstrap.nodeCluster ?? "", service: stream.service,
                    types: [(typeURL, false)], initialFetchTimeout: 0, registry: registry, names: names,
                    apply: { [weak self] url, resources, version, versions in
                        guard let self else { return nil }
                        return stream.service == .routes
                            ? self.applyRouteStream(source, url, resources, version, versions)
                            : self.applySecrets(url, resources, version, versions, from: source)
                    })
                sourceStreamClients.withLockedValue { $0[stream] = client }
                Log.info("\(what): connecting", [("cluster", stream.api.clusterName), ("address", "\(address)")])
                client.start {}
            } catch {
                Log.error("\(what): cannot open the stream", [("cluster", stream.api.clusterName), ("error", "\(error)")])
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

    func stopSourceStreams() {
        for client in sourceStreamClients.withLockedValue({ $0.values }) { client.stop() }
    }
}
