/// `internal_only_headers`: headers only internal requests may carry.
///
/// Envoy's connection manager removes them from every request that is not internal, before a route is chosen
/// and before the router adds any header. The proxy never marks a request internal (Pilotfish has no
/// `use_remote_address` / `internal_address_config`), so there they are removed from every request; the
/// route-check tool's `internal: true` input keeps them.
extension RouteConfiguration {
    /// The request as routing sees it.
    package func requestAsRouted(_ request: RouteRequest) -> RouteRequest {
        guard needsInternalOnlyHeadersRemoved(request) else { return request }
        var routed = request
        for name in internalOnlyHeaders { routed.headers.remove(name: name) }
        return routed
    }

    /// The request is external and carries one of `internal_only_headers`.
    package func needsInternalOnlyHeadersRemoved(_ request: RouteRequest) -> Bool {
        !request.isInternal && !internalOnlyHeaders.isEmpty
            && internalOnlyHeaders.contains(where: { request.headers.contains(name: $0) })
    }

    /// One `internal_only_headers` entry, lower-cased; nil for a pseudo-header or `host`, which Envoy accepts
    /// but whose removal by that name touches nothing there (the authority is `:authority`).
    package static func decodeInternalOnlyHeader(_ value: ConfigValue) throws -> String? {
        let name = try value.nonEmptyString().lowercased()
        if ConfigValue.firstControlCharacter(in: name) != nil {
            throw value.error("header name '\(name)' contains a control character")
        }
        if name.hasPrefix(":") || name == "host" { return nil }
        return name
    }
}
