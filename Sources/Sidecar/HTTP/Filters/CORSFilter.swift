import NIOCore
import NIOHTTP1
import SidecarCore

/// `envoy.filters.http.cors` (Envoy's cors_filter.cc). The filter itself has no settings: the policy comes from
/// the `typed_per_filter_config` (`CorsPolicy`) of the route, virtual host and route configuration, merged field
/// by field, most specific first; when none of the three has one, from the deprecated `cors` field of the route
/// action and virtual host. Only requests on a forwarding route are looked at (Envoy's filter skips direct
/// responses, redirects and unrouted requests).
///
/// A request with an `origin` header counts `origin_valid` or `origin_invalid` (unless the policy is disabled).
/// When enforced, a preflight (OPTIONS with `origin` and `access-control-request-method`) is answered here with
/// a bodyless 200 carrying the `access-control-allow-*` headers, and never reaches the upstream; a preflight from
/// an origin that is not allowed goes upstream unless `forward_not_matching_preflights: false`. Any other response
/// to an allowed origin gets `access-control-allow-origin` (the request's origin), `-allow-credentials` and
/// `-expose-headers`.
final class CORSFilter: HTTPFilterFactory, @unchecked Sendable {
    // Immutable; shared by every worker.
    static let typeURL = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
    static let policyTypeURL = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
    static let registration = HTTPFilterRegistration(
        typeURL: typeURL, name: "envoy.filters.http.cors",
        // `Cors` has no fields: the registry reports any it finds.
        decode: { _ in CORSFilterConfig() },
        perRoute: [(policyTypeURL, { @Sendable (o: ConfigObject) throws -> any Sendable in try CORSPolicy.decode(o) })],
        fields: [
            .init("envoy.extensions.filters.http.cors.v3.CorsPolicy", type: policyTypeURL, """
                allow_origin_string_match allow_methods allow_headers expose_headers max_age allow_credentials
                allow_private_network_access forward_not_matching_preflights filter_enabled shadow_enabled
                """),
            // The route's and virtual host's deprecated `cors` field: the same message without a @type.
            .init("envoy.config.route.v3.CorsPolicy", """
                allow_origin_string_match allow_methods allow_headers expose_headers max_age allow_credentials
                allow_private_network_access forward_not_matching_preflights filter_enabled shadow_enabled
                """),
        ])

    let name: String
    let stats: CORSStats

    init(name: String, stats: CORSStats) {
        self.name = name
        self.stats = stats
    }

    /// CORS keeps what it learnt from the request for the response: one instance per stream.
    func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter { StreamFilter(self) }

    /// The policies for this request: the `typed_per_filter_config` ones; without any, the deprecated `cors`
    /// fields of the route and virtual host (Envoy ignores those as soon as one typed policy applies).
    func policyChain(_ stream: HTTPFilterStream) -> CORSPolicyChain {
        let p = stream.perFilterConfig
        let typed = CORSPolicyChain(p.route[name]?.config as? CORSPolicy, p.virtualHost[name]?.config as? CORSPolicy,
                                    p.routeConfiguration[name]?.config as? CORSPolicy)
        guard typed.isEmpty, case .forward(let target) = stream.route else { return typed }
        return CORSPolicyChain(target.routeCORS, target.virtualHostCORS)
    }

    final class StreamFilter: HTTPStreamFilter {
        let factory: CORSFilter
        var chain = CORSPolicyChain()
        var evaluation = CORSEvaluation()

        init(_ factory: CORSFilter) { self.factory = factory }

        func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream)
            -> FilterHeadersStatus
        {
            guard case .forward = stream.route, !stream.filterDisabled(factory.name) else { return .continue }
            chain = factory.policyChain(stream)
            if chain.isEmpty { return .continue }
            let chain = chain
            let h = head.headers
            evaluation = CORSEvaluation.evaluate(
                chain, method: head.method.rawValue, origin: Self.joined(h, "origin"),
                requestMethod: Self.joined(h, "access-control-request-method"),
                requestHeaders: Self.joined(h, "access-control-request-headers"),
                requestPrivateNetwork: Self.joined(h, "access-control-request-private-network"),
                enabled: { chain.enabled(stream.worker.server.runtime) { stream.worker.random.next() } },
                shadowEnabled: { chain.shadowEnabled(stream.worker.server.runtime) { stream.worker.random.next() } })
            switch evaluation.origin {
            case .valid: stream.stats.inc(factory.stats.originValid)
            case .invalid: stream.stats.inc(factory.stats.originInvalid)
            case .notChecked: break
            }
            guard let preflight = evaluation.preflight else { return .continue }
            // Envoy answers with the filter callbacks' encodeHeaders, not a local reply: the response passes
            // through every encoder (this one adds expose-headers) but carries no local-reply additions (the
            // route's response_headers_to_add) and no body. Like any early answer over HTTP/1, it closes the
            // connection when a request body is still to come.
            var headers = HTTPHeaders()
            for (n, v) in preflight { headers.add(name: n, value: v) }
            stream.respond(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers),
                           closeConnection: stream.requestHasBody)
            return .stopIteration
        }

        func encodeHeaders(_ head: inout HTTPResponseHead, endStream: Bool, stream: HTTPFilterStream)
            -> FilterHeadersStatus
        {
            evaluation.applyResponseHeaders(chain, to: &head.headers)
            return .continue
        }

        /// A request header as Envoy's header map holds it: repeated values joined with `,`.
        static func joined(_ headers: HTTPHeaders, _ name: String) -> String? {
            var it = headers[name].makeIterator()
            guard let first = it.next() else { return nil }
            guard let second = it.next() else { return first }
            var out = first + "," + second
            while let more = it.next() { out += "," + more }
            return out
        }
    }
}

/// `http.<stat_prefix>.cors.{origin_valid,origin_invalid}`.
struct CORSStats: Sendable {
    let originValid, originInvalid: Int

    init(statPrefix: String, registry r: StatsRegistry) {
        let label = ("envoy_http_conn_manager_prefix", statPrefix)
        func reg(_ s: String) -> Int {
            r.registerOnce("http.\(statPrefix).cors.\(s)", .counter, family: "http.cors.\(s)", labels: [label])
        }
        originInvalid = reg("origin_invalid")
        originValid = reg("origin_valid")
    }
}

/// `envoy.extensions.filters.http.cors.v3.Cors`: an empty message.
struct CORSFilterConfig: HTTPFilterConfig {
    func makeFactory(_ context: HTTPFilterBuildContext) -> any HTTPFilterFactory {
        CORSFilter(name: context.filterName, stats: CORSStats(statPrefix: context.statPrefix, registry: context.registry))
    }
}
