import NIOCore
import NIOHTTP1
import SidecarCore

/// `envoy.filters.http.router`, the last filter of every chain: it acts on the route the connection manager chose
/// for the request (no route: 404; direct response; redirect) or forwards it upstream. The attempts (retries,
/// per-try timeouts) are a pure state machine, `RouterAttemptStateMachine`; the connection's upstream side
/// (`HTTPProxyHandler+Upstream.swift`) drives it with the host choice, connection pool, circuit breakers and
/// timers. This filter is where the chain hands the request to it.
final class RouterFilter: HTTPStreamFilter {
    static let name = "envoy.filters.http.router"
    static let typeURL = Listener.routerType
    static let registration = HTTPFilterRegistration(
        typeURL: typeURL, name: name, decode: { try RouterConfig.decode($0) })

    unowned let connection: HTTPProxyHandler

    init(connection: HTTPProxyHandler) {
        self.connection = connection
    }

    func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        switch stream.route {
        case .noRoute:
            stream.stats.inc(connection.listener.stats.noRoute)
            connection.responseFlags.insert(.noRouteFound)
            stream.sendLocalReply(status: .notFound, body: "", closeConnection: false, details: "route_not_found")
        case .directResponse(let d, let mutations, _, _):
            stream.stats.inc(connection.listener.stats.directResponse)
            connection.responseMutations = mutations
            stream.sendLocalReply(status: HTTPResponseStatus(statusCode: d.status),
                                  body: d.body.map { String(decoding: $0, as: UTF8.self) } ?? "",
                                  closeConnection: false, details: "direct_response")
        case .redirect(let location, let status, let mutations, _, _):
            connection.responseMutations = mutations
            var extra = HTTPHeaders()
            extra.add(name: "location", value: location)
            // Envoy makes a redirect a direct response entry of the route.
            stream.sendLocalReply(status: HTTPResponseStatus(statusCode: status), body: "", headers: extra,
                                  closeConnection: false, details: "direct_response")
        case .forward(let target):
            connection.forward(head, target: target, request: stream.request)
            if endStream && !stream.localReplySent { connection.routerRequestEnded(nil) }
        }
        // The router is the end of the chain: `continue` lets the stream pass what follows straight to it.
        return .continue
    }

    func decodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus {
        if data.readableBytes > 0 {
            if !connection.shadows.isEmpty { connection.mirror(.body(.byteBuffer(data)), bytes: data.readableBytes) }
            connection.requestBody(.body(.byteBuffer(data)), bytes: data.readableBytes)
        }
        if endStream { connection.routerRequestEnded(nil) }
        return .continue
    }

    func decodeTrailers(_ trailers: inout HTTPHeaders, stream: HTTPFilterStream) -> FilterTrailersStatus {
        connection.routerRequestEnded(trailers)
        return .continue
    }
}

/// A router entry in `http_filters` for each stream: the connection's own router.
struct RouterFactory: HTTPFilterFactory {
    let name: String
    func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter { stream.router }
}

/// `envoy.extensions.filters.http.router.v3.Router`: `start_child_span` (a span per upstream request when the
/// connection manager traces).
struct RouterConfig: HTTPFilterConfig {
    var startChildSpan = false

    static func decode(_ t: ConfigObject) throws -> RouterConfig {
        try t.unsupported([
            "dynamic_stats", "upstream_log", "upstream_log_options",
            "suppress_envoy_headers", "strict_check_headers", "respect_expected_rq_timeout",
            "suppress_grpc_request_failure_code_stats", "upstream_http_filters",
        ])
        var config = RouterConfig()
        config.startChildSpan = try t.optional("start_child_span")?.bool() ?? false
        try t.finish()
        return config
    }

    func makeFactory(_ context: HTTPFilterBuildContext) -> any HTTPFilterFactory {
        RouterFactory(name: context.filterName)
    }
}
