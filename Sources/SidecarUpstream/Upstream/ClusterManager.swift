import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SidecarCore

/// Keeps one `ClusterInfo` per cluster across config snapshots (Envoy's cluster manager): a snapshot that names a
/// cluster with the config it had before gets the same object, so its stats, breakers and every worker's pools
/// and hosts carry over. A cluster that is new, or whose config changed, gets a new object; its stats are
/// registered under its name, so a changed cluster keeps counting into the stats it had (as in Envoy's store),
/// and workers make room for new ones when they install the snapshot that brings them.
package final class ClusterManager: @unchecked Sendable {
    private let registry: StatsRegistry
    /// Guards `known`: snapshots may be built from any thread.
    private let lock = NIOLock()
    /// The latest info given out for each cluster name: a cluster removed and later added back unchanged is
    /// the same.
    private var known: [String: ClusterInfo] = [:]

    package init(registry: StatsRegistry) {
        self.registry = registry
    }

    /// The cluster infos for `configs`, in order: known ones reused, new or changed ones made (their stats
    /// registered). They become known with `commit`, once the snapshot made of them is installed: an update that
    /// is refused after this leaves the running clusters the ones a later update reuses.
    package func infos(for configs: [Cluster]) -> [ClusterInfo] {
        lock.withLock {
            configs.map { c in
                if let info = known[c.name], info.config == c { return info }
                return ClusterInfo(config: c, registry: registry)
            }
        }
    }

    /// `infos` are installed: the ones a later snapshot that names their clusters unchanged reuses.
    package func commit(_ infos: [ClusterInfo]) {
        lock.withLock {
            for info in infos { known[info.name] = info }
        }
    }

    /// The host of an endpoint whose address is an IP (nil for a name).
    package static func ipHost(_ ep: Cluster.Endpoint) -> UpstreamHost? {
        guard let addr = try? SocketAddress(ipAddress: ep.address.address, port: ep.address.port) else { return nil }
        return UpstreamHost(ep, address: addr)
    }

    /// Resolves a cluster's endpoints: IPs as they are, names through getaddrinfo (STRICT_DNS keeps every
    /// address, LOGICAL_DNS the first).
    package static func resolve(_ cluster: Cluster) -> [UpstreamHost] {
        var hosts: [UpstreamHost] = []
        for ep in cluster.endpoints {
            let port = ep.address.port
            if let host = ipHost(ep) {
                hosts.append(host)
                continue
            }
            var addrs = lookup(ep.address.address, port: port, family: cluster.dnsLookupFamily)
            if cluster.type == .LOGICAL_DNS { addrs = Array(addrs.prefix(1)) }
            for a in addrs {
                hosts.append(UpstreamHost(ep, address: a))
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
