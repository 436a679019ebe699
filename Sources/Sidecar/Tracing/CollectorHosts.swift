import Foundation
import NIOConcurrencyHelpers
import NIOCore
import SidecarCore
import SidecarUpstream

/// Where a tracer's collector cluster is: its hosts resolved at start-up, resolved again (at most every five
/// seconds, on the exporter's thread) while there are none. Reports go to the first host.
final class CollectorHosts: Sendable {
    private let cluster: Cluster
    private let state: NIOLockedValueBox<(hosts: [UpstreamHost], lastResolve: NIODeadline)>

    init(_ cluster: Cluster) {
        self.cluster = cluster
        state = NIOLockedValueBox((ClusterManager.resolve(cluster), .now()))
    }

    func address() -> SocketAddress? {
        let (hosts, last) = state.withLockedValue { ($0.hosts, $0.lastResolve) }
        if let first = hosts.first { return first.address }
        guard NIODeadline.now() - last >= .seconds(5) else { return nil }
        let resolved = ClusterManager.resolve(cluster)
        state.withLockedValue { $0 = (resolved, .now()) }
        return resolved.first?.address
    }
}
