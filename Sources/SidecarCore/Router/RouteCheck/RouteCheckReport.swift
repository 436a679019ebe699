import Foundation

/// What `sidecar route-check` prints and how it exits, worded as Envoy's router_check_tool words it
/// (`printResults` in `router.cc`, `main` in `router_check.cc`).
///
/// - `details`: every test's name; a failed test's name and then one line per failed check go to standard
///   error, a passed test's name to standard output.
/// - `onlyShowFailures`: only failed tests (with their failures), with or without `details`.
/// - Any failure: exit 1, and no coverage line.
/// - Otherwise `Current route coverage: N%` (comprehensive with `comprehensiveCoverage`, which also lists the
///   routes no test covered, as `detailedCoverage` does for the plain figure); exit 1 when it is under a
///   non-zero `failUnder`, with `Failed to meet coverage requirement: N%` on standard error.
public struct RouteCheckReport: Sendable {
    public struct Options: Sendable {
        public var details = false
        public var onlyShowFailures = false
        /// Percent; 0 checks nothing.
        public var failUnder = 0.0
        public var comprehensiveCoverage = false
        public var detailedCoverage = false

        public init(details: Bool = false, onlyShowFailures: Bool = false, failUnder: Double = 0,
                    comprehensiveCoverage: Bool = false, detailedCoverage: Bool = false) {
            self.details = details
            self.onlyShowFailures = onlyShowFailures
            self.failUnder = failUnder
            self.comprehensiveCoverage = comprehensiveCoverage
            self.detailedCoverage = detailedCoverage
        }
    }

    public enum Stream: Sendable { case standardOutput, standardError }

    public var lines: [(stream: Stream, text: String)] = []
    public var exitCode: Int32 = 0

    public init(results: [RouteCheckResult], coverage: RouteCheckCoverage, options: Options) {
        let printed = { (r: RouteCheckResult) in
            (options.details && !options.onlyShowFailures) || (options.onlyShowFailures && !r.passed)
        }
        for r in results where printed(r) {
            if r.passed {
                lines.append((.standardOutput, r.name))
            } else {
                lines.append((.standardError, r.name))
                for f in r.failures { lines.append((.standardError, f)) }
            }
        }
        if results.contains(where: { !$0.passed }) {
            exitCode = 1
            return
        }
        let percent: Double
        if options.comprehensiveCoverage {
            percent = coverage.comprehensivePercent
            for (host, route) in coverage.uncoveredRoutes {
                lines.append((.standardOutput, "Missing test for host: \(host), route: \(Self.describe(route.match))"))
            }
        } else {
            percent = coverage.percent
            if options.detailedCoverage {
                for (host, route) in coverage.uncoveredRoutes {
                    lines.append((.standardOutput, "Missing test for host: \(host), route name: \(route.name ?? "")"))
                }
            }
        }
        lines.append((.standardOutput, "Current route coverage: \(Self.number(percent))%"))
        if options.failUnder != 0 && percent < options.failUnder {
            lines.append((.standardError, "Failed to meet coverage requirement: \(Self.number(options.failUnder))%"))
            exitCode = 1
        }
    }

    /// A number as C++ streams print a double by default (six significant digits, `%g`).
    package static func number(_ value: Double) -> String {
        String(format: "%g", value)
    }

    /// A route's match in protobuf text style, e.g. `prefix: "/api"`.
    package static func describe(_ match: RouteMatch) -> String {
        var parts: [String]
        switch match.path {
        case .prefix(let p): parts = ["prefix: \"\(p)\""]
        case .path(let p): parts = ["path: \"\(p)\""]
        case .regex(let r): parts = ["safe_regex { regex: \"\(r.pattern)\" }"]
        case .separatedPrefix(let p): parts = ["path_separated_prefix: \"\(p)\""]
        case .connect: parts = ["connect_matcher { }"]
        }
        if !match.caseSensitive { parts.append("case_sensitive { value: false }") }
        for h in match.headers { parts.append("headers { name: \"\(h.name)\" }") }
        for q in match.queryParameters { parts.append("query_parameters { name: \"\(q.name)\" }") }
        if let rf = match.runtimeFraction {
            parts.append("runtime_fraction { runtime_key: \"\(rf.runtimeKey ?? "")\" }")
        }
        if match.grpc { parts.append("grpc { }") }
        for m in match.dynamicMetadata { parts.append("dynamic_metadata { filter: \"\(m.filter)\" }") }
        return parts.joined(separator: " ")
    }
}
