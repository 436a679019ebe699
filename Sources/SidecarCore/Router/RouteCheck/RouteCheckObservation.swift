import NIOHTTP1

/// What Envoy's router_check_tool reads back after routing one test input (`RouterCheckTool::compareEntries`
/// in `test/tools/router_check/router.cc`): the route chosen and the request and response headers after
/// that route's header processing (`finalizeHeaders`).
///
/// As upstream: cluster, virtual host, virtual cluster, rewrites and timeout come from a forwarding route
/// only ("" or 0 otherwise); path_redirect and code_redirect from a redirect, direct response or
/// `require_tls` redirect only.
package struct RouteCheckObservation {
    /// Which part of the route table answered, for coverage: a route (with the weighted cluster picked, for
    /// a weighted route) or a `require_tls` redirect (one entry for all virtual hosts, as upstream, where it is
    /// a single shared route object).
    package enum Entry: Hashable {
        case route(virtualHost: Int, route: Int, weightedCluster: Int?)
        case tlsRedirect
    }

    package var entry: Entry?
    /// A forwarding route answered (upstream: `routeEntry() != nullptr`).
    package var isForward = false
    /// A redirect, direct response or TLS redirect answered (upstream: `directResponseEntry() != nullptr`).
    package var isDirectResponse = false

    package var cluster = ""
    package var virtualHost = ""
    package var virtualCluster = ""
    /// `:path` and `:authority` after the route's rewrites.
    package var path = ""
    package var host = ""
    package var redirect = ""
    package var code: UInt32 = 0
    package var timeoutMilliseconds: Int64 = 0
    package var metadata = Metadata()
    package var requestHeaders = HTTPHeaders()
    package var responseHeaders = HTTPHeaders()

    /// Header value templates as the tool evaluates them: the downstream remote address is 127.0.0.1.
    package static let formatContext: FormatContext = {
        var info = StreamInfo()
        info.downstreamRemoteAddress = StreamAddress(ip: "127.0.0.1", port: 0)
        info.downstreamDirectRemoteAddress = info.downstreamRemoteAddress
        info.downstreamLocalAddress = StreamAddress(ip: "127.0.0.1", port: 0)
        info.protocolName = "HTTP/1.1"
        info.hostname = "localhost"
        return FormatContext(stream: info)
    }()

    /// The request the tool builds from an input (`ToolConfig::create`): `:authority`, `:path`, `:method`,
    /// `:scheme` and `x-forwarded-proto` from the input, `x-envoy-internal: true` when internal, then the
    /// additional headers.
    package static func request(for input: RouteCheckInput) -> RouteRequest {
        let scheme = input.ssl ? "https" : "http"
        var headers = HTTPHeaders()
        headers.add(name: "x-forwarded-proto", value: scheme)
        if input.isInternal { headers.add(name: "x-envoy-internal", value: "true") }
        for h in input.additionalRequestHeaders { headers.add(name: h.key, value: h.value) }
        return RouteRequest(
            method: input.method, path: input.path, authority: input.authority, scheme: scheme,
            isInternal: input.isInternal, headers: headers, randomValue: input.randomValue,
            // The tool's runtime mock: only the input's `runtime` key is on; without one, none is.
            enabledRuntimeKey: input.runtime,
            dynamicMetadata: RouteCheckDynamicMetadata.apply(input.dynamicMetadata))
    }

    package init(config: RouteConfiguration, input: RouteCheckInput) {
        let request = Self.request(for: input)
        requestHeaders.add(name: ":authority", value: request.authority)
        requestHeaders.add(name: ":path", value: request.path)
        requestHeaders.add(name: ":method", value: request.method)
        requestHeaders.add(name: ":scheme", value: request.scheme)
        requestHeaders.add(contentsOf: request.headers)
        for h in input.additionalResponseHeaders { responseHeaders.add(name: h.key, value: h.value) }

        let selection = config.select(config.requestAsRouted(request))
        switch selection {
        case .noVirtualHost, .noRoute:
            break
        case .tlsRedirect:
            entry = .tlsRedirect
        case .route(let v, let r):
            let route = config.virtualHosts[v].routes[r]
            metadata = route.metadata
            var weighted: Int?
            if case .forward(let f) = route.action, case .weighted(let clusters, let total) = f.cluster {
                weighted = ForwardAction.weightedIndex(clusters, total: total, random: request.randomValue)
            }
            entry = .route(virtualHost: v, route: r, weightedCluster: weighted)
        }

        switch config.route(request) {
        case .noRoute:
            break
        case .forward(let target):
            isForward = true
            cluster = target.cluster
            virtualHost = target.virtualHost
            timeoutMilliseconds = target.timeout.milliseconds
            // finalizeRequestHeaders: the header mutations (most specific first, so the least specific wins),
            // then the host rewrite, then the path rewrite; then finalizeResponseHeaders.
            for m in target.mutations { m.applyRequest(to: &requestHeaders, context: Self.formatContext) }
            if let host = target.hostRewrite { requestHeaders.replaceOrAdd(name: ":authority", value: host) }
            requestHeaders.replaceOrAdd(name: ":path", value: target.path(for: request.path))
            var responseContext = Self.formatContext
            responseContext.requestHeaders = requestHeaders
            for m in target.mutations { m.applyResponse(to: &responseHeaders, context: responseContext) }
            path = requestHeaders.first(name: ":path") ?? ""
            host = requestHeaders.first(name: ":authority") ?? ""
            // The tool asks for the virtual cluster after finalizing, so on the rewritten headers.
            if case .route(let v, _, _)? = entry {
                let headers = requestHeaders
                let lookup: (String) -> String? = { Self.joined(headers, $0) }
                virtualCluster = config.virtualHosts[v].virtualClusterName(lookup) ?? ""
            }
        case .redirect(let location, let status, let mutations, _, _):
            isDirectResponse = true
            redirect = location
            code = UInt32(status)
            responseHeaders.replaceOrAdd(name: ":status", value: String(status))
            for m in mutations { m.applyResponse(to: &responseHeaders, context: Self.formatContext) }
        case .directResponse(let response, let mutations, _, _):
            isDirectResponse = true
            // newUri without a redirect config: the request's own URL.
            let path = request.path.hasPrefix("/") ? request.path : "/" + request.path
            redirect = request.scheme + "://" + request.authority + path
            code = UInt32(response.status)
            // sendLocalReply: a body brings content-length and content-type text/plain.
            responseHeaders.replaceOrAdd(name: ":status", value: String(response.status))
            if let body = response.body, !body.isEmpty {
                responseHeaders.replaceOrAdd(name: "content-length", value: String(body.count))
                responseHeaders.replaceOrAdd(name: "content-type", value: "text/plain")
            }
            for m in mutations { m.applyResponse(to: &responseHeaders, context: Self.formatContext) }
        }
    }

    /// All values of a header joined with ",", as Envoy's header matchers see them; nil when absent.
    package static func joined(_ headers: HTTPHeaders, _ name: String) -> String? {
        let values = headers[name]
        return values.isEmpty ? nil : values.joined(separator: ",")
    }

    /// The string at `key` in the route's `filter_metadata[namespace]`; "" when absent, other kinds of value
    /// as their JSON text.
    package func metadataString(namespace: String, key: String) -> String {
        guard let v = metadata.value(namespace: namespace, key: key) else { return "" }
        return Self.text(v)
    }

    package static func text(_ v: MetadataValue) -> String {
        switch v {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let n): return n == n.rounded() && abs(n) < 1e15 ? String(Int64(n)) : String(n)
        case .string(let s): return s
        case .list(let items): return "[" + items.map(quoted).joined(separator: ",") + "]"
        case .structure(let fields):
            return "{" + fields.keys.sorted().map { "\"\($0)\":" + quoted(fields[$0]!) }.joined(separator: ",") + "}"
        }
    }

    private static func quoted(_ v: MetadataValue) -> String {
        if case .string(let s) = v { return "\"" + s + "\"" }
        return text(v)
    }
}
