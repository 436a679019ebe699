/// Route coverage as the upstream tool measures it (`test/tools/router_check/coverage.cc`).
///
/// An entry of the table (a route, each cluster of a weighted route counted separately, or a virtual host's
/// `require_tls` redirect) is covered once a check that held looked at it. The plain report is the share of
/// entries covered; the comprehensive one (`--covall`) weighs each covered entry by the share of its fields
/// that were checked: cluster, virtual cluster, virtual host, path rewrite and host rewrite for a forwarding
/// route; redirect path and code for a redirect or direct response.
public struct RouteCheckCoverage: Sendable {
    package enum Field: Sendable {
        case cluster, virtualCluster, virtualHost, pathRewrite, hostRewrite, redirectPath, redirectCode

        package static let forwardFields: [Field] = [.cluster, .virtualCluster, .virtualHost, .pathRewrite, .hostRewrite]
        package static let directResponseFields: [Field] = [.redirectPath, .redirectCode]
    }

    package let config: RouteConfiguration
    /// In the order they were first covered.
    private var entries: [RouteCheckObservation.Entry] = []
    private var fields: [RouteCheckObservation.Entry: Set<Field>] = [:]

    public init(config: RouteConfiguration, results: [RouteCheckResult] = []) {
        self.config = config
        for r in results { add(r) }
    }

    public mutating func add(_ result: RouteCheckResult) {
        for (entry, field) in result.covered {
            if fields[entry] == nil { entries.append(entry) }
            fields[entry, default: []].insert(field)
        }
    }

    /// Entries of the table: a weighted route counts once per cluster.
    package var entryCount: Int {
        config.virtualHosts.reduce(0) { sum, vh in
            sum + vh.routes.reduce(0) { n, route in
                if case .forward(let f) = route.action, case .weighted(let clusters, _) = f.cluster {
                    return n + clusters.count
                }
                return n + 1
            }
        }
    }

    /// Percent of entries covered.
    public var percent: Double {
        100 * Double(entries.count) / Double(entryCount)
    }

    /// Percent with each covered entry weighed by the share of its fields checked.
    public var comprehensivePercent: Double {
        var sum = 0.0
        for entry in entries {
            let all = isForward(entry) ? Field.forwardFields : Field.directResponseFields
            let covered = fields[entry] ?? []
            sum += Double(all.filter(covered.contains).count) / Double(all.count)
        }
        return 100 * sum / Double(entryCount)
    }

    /// Routes no check covered, as (virtual host name, route) in table order.
    public var uncoveredRoutes: [(virtualHost: String, route: Route)] {
        var out: [(String, Route)] = []
        for (v, vh) in config.virtualHosts.enumerated() {
            for (r, route) in vh.routes.enumerated() where !entries.contains(where: { $0.isRoute(v, r) }) {
                out.append((vh.name, route))
            }
        }
        return out
    }

    private func isForward(_ entry: RouteCheckObservation.Entry) -> Bool {
        guard case .route(let v, let r, _) = entry else { return false }
        if case .forward = config.virtualHosts[v].routes[r].action { return true }
        return false
    }
}

extension RouteCheckObservation.Entry {
    package func isRoute(_ v: Int, _ r: Int) -> Bool {
        if case .route(v, r, _) = self { return true }
        return false
    }
}
