import NIOCore
import NIOHTTP1
import SidecarCore

/// `envoy.filters.http.csrf` (Envoy's csrf_filter.cc): a mutating request (POST, PUT, DELETE, PATCH) must come
/// from the origin it is sent to. The source origin is the host and port of `Origin`, else of `Referer`; the
/// destination is the request's host (`:authority`); both as written, so a port or letter case that differs is a
/// mismatch. `additional_origins` lists more allowed sources. A request without a source origin
/// (`Origin: null` included) counts `missing_source_origin`, a mismatch `request_invalid`; both are answered
/// with a local 403 `Invalid origin` unless the policy only shadows (`filter_enabled` off, `shadow_enabled`
/// on), which counts and lets them through.
///
/// The most specific `typed_per_filter_config` replaces the filter's policy as a whole. Unlike the CORS filter,
/// CSRF checks every request, routed or not (an unrouted one with the filter's own policy).
final class CSRFFilter: HTTPStreamFilter, HTTPFilterFactory, @unchecked Sendable {
    // Immutable; shared by every worker.
    static let typeURL = "type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy"
    static let registration = HTTPFilterRegistration(
        typeURL: typeURL, name: "envoy.filters.http.csrf",
        decode: { try CSRFPolicy.decode($0) },
        perRoute: [(typeURL, { @Sendable (o: ConfigObject) throws -> any Sendable in try CSRFPolicy.decode(o) })],
        fields: [
            .init("envoy.extensions.filters.http.csrf.v3.CsrfPolicy", type: typeURL,
                  "filter_enabled shadow_enabled additional_origins"),
        ])

    static let invalidOriginBody = "Invalid origin"

    let name: String
    let policy: CSRFPolicy
    let stats: CSRFStats

    init(name: String, policy: CSRFPolicy, stats: CSRFStats) {
        self.name = name
        self.policy = policy
        self.stats = stats
    }

    func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter { self }

    func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        if stream.filterDisabled(name) { return .continue }
        // Envoy resolves the per-route policy through the route: an unrouted request has none.
        var p = policy
        if case .noRoute = stream.route {} else if let perRoute = stream.perRouteConfig(name, as: CSRFPolicy.self) {
            p = perRoute
        }
        // Envoy asks enabled() and shadowEnabled() again at each use, each drawing its own random number.
        let runtime = stream.worker.server.runtime
        func enabled() -> Bool { p.filterEnabled.evaluate(runtime, random: stream.worker.random.next()) }
        func shadowEnabled() -> Bool {
            p.shadowEnabled?.evaluate(runtime, random: stream.worker.random.next()) ?? false
        }
        if !enabled() && !shadowEnabled() { return .continue }
        let h = head.headers
        let outcome = p.check(method: head.method.rawValue, origin: Self.joined(h, "origin"),
                              referer: Self.joined(h, "referer"), host: stream.request.authority,
                              scheme: stream.downstream.security != nil ? "https" : "http")
        switch outcome {
        case .notChecked:
            return .continue
        case .valid:
            stream.stats.inc(stats.requestValid)
            return .continue
        case .missingSourceOrigin:
            stream.stats.inc(stats.missingSourceOrigin)
        case .invalid:
            stream.stats.inc(stats.requestInvalid)
        }
        if shadowEnabled() && !enabled() { return .continue }
        stream.sendLocalReply(status: .forbidden, body: Self.invalidOriginBody)
        return .stopIteration
    }

    /// A request header as Envoy's header map holds it: repeated values joined with `,`.
    private static func joined(_ headers: HTTPHeaders, _ name: String) -> String? {
        let values = headers[name]
        return values.isEmpty ? nil : values.joined(separator: ",")
    }
}

/// `http.<stat_prefix>.csrf.{missing_source_origin,request_invalid,request_valid}`.
struct CSRFStats: Sendable {
    let missingSourceOrigin, requestInvalid, requestValid: Int

    init(statPrefix: String, registry r: StatsRegistry) {
        let label = ("envoy_http_conn_manager_prefix", statPrefix)
        func reg(_ s: String) -> Int {
            r.registerOnce("http.\(statPrefix).csrf.\(s)", .counter, family: "http.csrf.\(s)", labels: [label])
        }
        missingSourceOrigin = reg("missing_source_origin")
        requestInvalid = reg("request_invalid")
        requestValid = reg("request_valid")
    }
}

extension CSRFPolicy: HTTPFilterConfig {
    func makeFactory(_ context: HTTPFilterBuildContext) -> any HTTPFilterFactory {
        CSRFFilter(name: context.filterName, policy: self,
                   stats: CSRFStats(statPrefix: context.statPrefix, registry: context.registry))
    }
}
