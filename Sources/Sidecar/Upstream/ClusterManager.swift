import Atomics
import Foundation
import NIOCore
import NIOPosix

/// The clusters of the bootstrap, with their resolved hosts. Immutable apart from DNS refreshes, which
/// are pushed to every worker as new host lists rather than shared behind a lock.
public final class ClusterManager: Sendable {
    /// A class: requests hold their cluster's entry, and copying a struct of this size (the whole `Cluster`
    /// config) retained a dozen references per request.
    public final class Entry: Sendable {
        public let config: Cluster
        public let stats: ClusterStats
        public let index: Int
        /// Circuit-breaker counts, shared by every worker (limits are cluster-wide, as in Envoy).
        let resources: ClusterResources
        let outlierStats: OutlierDetectionStats?
        let healthCheckStats: HealthCheckStats?
        /// Set by the first upstream connection: health checks then leave `no_traffic_interval`.
        let traffic = ManagedAtomic(false)
        /// UpstreamTlsContext: connections are TLS, checked and counted under `cluster.<name>.ssl.*`.
        let tls: TransportTLS?

        init(config: Cluster, stats: ClusterStats, index: Int, resources: ClusterResources,
             outlierStats: OutlierDetectionStats?, healthCheckStats: HealthCheckStats?, tls: TransportTLS?) {
            self.config = config
            self.stats = stats
            self.index = index
            self.resources = resources
            self.outlierStats = outlierStats
            self.healthCheckStats = healthCheckStats
            self.tls = tls
        }
    }

    public let clusters: [Entry]
    private let byName: [String: Int]

    init(configs: [Cluster], registry: StatsRegistry) {
        var list: [Entry] = []
        var names: [String: Int] = [:]
        for (i, c) in configs.enumerated() {
            let stats = ClusterStats(cluster: c.name, registry: registry)
            let resources = ClusterResources(thresholds: c.circuitBreakers)
            _ = CircuitBreakerStats(cluster: c.name, resources: resources, registry: registry)
            list.append(Entry(
                config: c, stats: stats, index: i, resources: resources,
                outlierStats: c.outlierDetection.map { _ in OutlierDetectionStats(cluster: c.name, registry: registry) },
                healthCheckStats: c.healthChecks.isEmpty ? nil : HealthCheckStats(cluster: c.name, registry: registry),
                tls: c.tls.map {
                    TransportTLS(
                        provider: TLSContextProvider($0, cluster: c),
                        stats: TLSStats(scope: "cluster.\(c.name)", familyPrefix: "cluster",
                                        label: ("envoy_cluster_name", c.name), registry: registry))
                }))
            names[c.name] = i
        }
        clusters = list
        byName = names
    }

    public func index(of name: String) -> Int? { byName[name] }

    /// Resolves a cluster's endpoints: IPs as they are, names through getaddrinfo (STRICT_DNS keeps every
    /// address, LOGICAL_DNS the first).
    static func resolve(_ cluster: Cluster) -> [UpstreamHost] {
        var hosts: [UpstreamHost] = []
        for ep in cluster.endpoints {
            let port = ep.address.port
            if let addr = try? SocketAddress(ipAddress: ep.address.address, port: port) {
                hosts.append(UpstreamHost(address: addr, hostname: ep.hostname ?? ep.address.address, weight: ep.weight))
                continue
            }
            var addrs = lookup(ep.address.address, port: port, family: cluster.dnsLookupFamily)
            if cluster.type == .LOGICAL_DNS { addrs = Array(addrs.prefix(1)) }
            for a in addrs {
                hosts.append(UpstreamHost(address: a, hostname: ep.hostname ?? ep.address.address, weight: ep.weight))
            }
        }
        return hosts
    }

    private static func lookup(_ name: String, port: Int, family: Cluster.DNSLookupFamily) -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        switch family {
        case .V4_ONLY: hints.ai_family = AF_INET
        case .V6_ONLY: hints.ai_family = AF_INET6
        case .AUTO, .V4_PREFERRED, .ALL: hints.ai_family = AF_UNSPEC
        }
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(name, String(port), &hints, &result) == 0, let first = result else { return [] }
        defer { freeaddrinfo(first) }
        var v4: [SocketAddress] = []
        var v6: [SocketAddress] = []
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            if ai.pointee.ai_family == AF_INET {
                ai.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { v4.append(SocketAddress($0.pointee, host: name)) }
            } else if ai.pointee.ai_family == AF_INET6 {
                ai.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { v6.append(SocketAddress($0.pointee, host: name)) }
            }
            p = ai.pointee.ai_next
        }
        var seen = Set<SocketAddress>()
        let ordered: [SocketAddress]
        switch family {
        case .V4_ONLY: ordered = v4
        case .V6_ONLY: ordered = v6
        case .V4_PREFERRED: ordered = v4.isEmpty ? v6 : v4
        case .AUTO: ordered = v6.isEmpty ? v4 : v6
        case .ALL: ordered = v4 + v6
        }
        return ordered.filter { seen.insert($0).inserted }
    }
}
