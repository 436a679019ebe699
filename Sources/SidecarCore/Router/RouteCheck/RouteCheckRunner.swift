import NIOHTTP1

/// The outcome of one test case: the failures in the order the upstream tool checks, each worded as it
/// words them (`expected: [x], actual: [y], test type: cluster_name`).
public struct RouteCheckResult: Sendable {
    public var name: String
    public var failures: [String]
    /// What the checks that held covered (see `RouteCheckCoverage`).
    package var covered: [(entry: RouteCheckObservation.Entry, field: RouteCheckCoverage.Field)] = []

    public var passed: Bool { failures.isEmpty }
}

/// Runs router_check_tool test cases against a route table and compares what it routes with what they expect.
public struct RouteCheckRunner: Sendable {
    /// The table as the tool runs it: a `runtime_fraction` route with a 0 % default is raised to 1 %
    /// (upstream's `assignRuntimeFraction`), so that `random_value: 0` with the route's runtime key on reaches
    /// it. The proxy keeps Envoy's strict `random % denominator < numerator`.
    public let config: RouteConfiguration

    public init(config: RouteConfiguration) {
        var c = config
        for v in c.virtualHosts.indices {
            for r in c.virtualHosts[v].routes.indices {
                if c.virtualHosts[v].routes[r].match.runtimeFraction?.numerator == 0 {
                    c.virtualHosts[v].routes[r].match.runtimeFraction?.numerator = 1
                }
            }
        }
        self.config = c
    }

    public func run(_ file: RouteCheckTestFile) -> [RouteCheckResult] {
        file.tests.map(run)
    }

    public func run(_ testCase: RouteCheckCase) -> RouteCheckResult {
        let seen = RouteCheckObservation(config: config, input: testCase.input)
        let expected = testCase.expected
        var result = RouteCheckResult(name: testCase.name, failures: [])

        /// compareResults: a mismatch is reported; a match covers `field` of the answering entry when
        /// `covers` (a forwarding route for the route fields, a direct response for the redirect fields).
        func compare(_ actual: String, _ want: String?, _ type: String, field: RouteCheckCoverage.Field?,
                     covers: Bool) {
            guard let want else { return }
            if actual == want {
                if let field, covers, let entry = seen.entry { result.covered.append((entry, field)) }
            } else {
                result.failures.append(Self.failure(expected: want, actual: actual, type: type))
            }
        }
        compare(seen.cluster, expected.clusterName, "cluster_name", field: .cluster, covers: seen.isForward)
        compare(seen.virtualCluster, expected.virtualClusterName, "virtual_cluster_name", field: .virtualCluster,
                covers: seen.isForward)
        compare(seen.virtualHost, expected.virtualHostName, "virtual_host_name", field: .virtualHost,
                covers: seen.isForward)
        compare(seen.path, expected.pathRewrite, "path_rewrite", field: .pathRewrite,
                covers: seen.isForward)
        compare(seen.host, expected.hostRewrite, "host_rewrite", field: .hostRewrite,
                covers: seen.isForward)
        compare(seen.redirect, expected.pathRedirect, "path_redirect", field: .redirectPath,
                covers: seen.isDirectResponse)
        compare(String(seen.code), expected.codeRedirect.map { String($0) }, "code_redirect", field: .redirectCode,
                covers: seen.isDirectResponse)

        for m in expected.requestHeaderMatches {
            if let failure = Self.check(m, seen.requestHeaders, type: "request_header_matches") {
                result.failures.append(failure)
            }
        }
        for h in expected.requestHeaderFields {
            compare(seen.requestHeaders.first(name: h.key) ?? "", h.value, "request_header_fields", field: nil,
                    covers: false)
        }
        for m in expected.responseHeaderMatches {
            if let failure = Self.check(m, seen.responseHeaders, type: "response_header_matches") {
                result.failures.append(failure)
            }
        }
        for h in expected.responseHeaderFields {
            compare(seen.responseHeaders.first(name: h.key) ?? "", h.value, "response_header_fields", field: nil,
                    covers: false)
        }
        compare(String(seen.timeoutMilliseconds), expected.timeout.map { String($0.milliseconds) }, "timeout",
                field: nil, covers: false)
        for m in expected.routeMetadata {
            compare(seen.metadataString(namespace: m.namespace, key: m.key), m.value,
                    "route_metadata.\(m.namespace).\(m.key)", field: nil, covers: false)
        }
        return result
    }

    /// Upstream's `reportFailure`.
    package static func failure(expected: String, actual: String, type: String, expectMatch: Bool = true) -> String {
        "expected: [\(expected)], actual: \(expectMatch ? "" : "NOT ")[\(actual)], test type: \(type)"
    }

    /// Upstream's `matchHeaderField`: nil when the matcher matches; otherwise the failure, worded by the kind of
    /// matcher (presence as `has(name):true/false`; an exact string as `name: value`, `NOT` when inverted; any
    /// other with the actual value only). A missing header shows as `NULL`; of repeated values, the first.
    package static func check(_ m: RouteCheckHeaderMatch, _ headers: HTTPHeaders, type: String) -> String? {
        if m.matcher.matches({ RouteCheckObservation.joined(headers, $0) }) { return nil }
        let type = type + "." + m.kind
        let actualValue = headers.first(name: m.matcher.name) ?? "NULL"
        switch m.kind {
        case "present_match":
            let invert = m.matcher.invert
            return failure(expected: "has(\(m.name)):\(!invert)", actual: "has(\(m.name)):\(invert)", type: type)
        case "string_match.exact":
            return failure(expected: "\(m.name): \(m.exact ?? "")", actual: "\(m.name): \(actualValue)", type: type,
                           expectMatch: !m.matcher.invert)
        default:
            return "actual: [\(m.name): \(actualValue)], test type: \(type)"
        }
    }
}
