extension RouteConfiguration {
    /// This table with every cluster it names resolved through `slot` (a config snapshot's clusters): route
    /// targets, weighted clusters and mirror policies. A name `slot` does not know stays unresolved; a request
    /// routed to it is answered as for an unknown cluster. `cluster_header` can only be resolved per request.
    package func resolvingClusters(_ slot: (String) -> ClusterSlot?) -> RouteConfiguration {
        var out = self
        for v in out.virtualHosts.indices {
            for r in out.virtualHosts[v].routes.indices {
                guard case .forward(var f) = out.virtualHosts[v].routes[r].action else { continue }
                switch f.cluster {
                case .named(let name):
                    f.clusterSlot = slot(name)
                case .weighted(var clusters, let total):
                    for i in clusters.indices { clusters[i].slot = slot(clusters[i].name) }
                    f.cluster = .weighted(clusters, total: total)
                case .fromHeader:
                    break
                }
                for i in f.mirrorPolicies.indices { f.mirrorPolicies[i].slot = slot(f.mirrorPolicies[i].cluster) }
                out.virtualHosts[v].routes[r].action = .forward(f)
                if case .named(let name) = f.cluster, f.prefixRewrite == nil, f.regexRewrite == nil {
                    out.virtualHosts[v].routes[r].fixedTarget = out.target(
                        f, cluster: name, slot: f.clusterSlot, rewrittenPath: nil, weightedHeaders: nil,
                        external: true, vh: out.virtualHosts[v], route: out.virtualHosts[v].routes[r])
                }
            }
        }
        return out
    }
}
