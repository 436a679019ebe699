import NIOHTTP1

/// A route's or virtual host's `rate_limits` entry (`envoy.config.route.v3.RateLimit`): the actions that turn a
/// request into one descriptor, a list of (key, value) entries, as rate limit filters match them.
public struct RateLimitPolicy: Sendable {
    public enum Action: Sendable {
        /// `request_headers`: the header's value under `descriptor_key`; a missing header drops the descriptor
        /// unless `skip_if_absent` (then this entry is left out).
        case requestHeaders(header: String, key: String, skipIfAbsent: Bool)
        /// `remote_address`: the client address (x-forwarded-for aware) as `remote_address`.
        case remoteAddress
        /// `generic_key`: a fixed entry.
        case genericKey(key: String, value: String)
        /// `header_value_match`: the entry only when the request's headers match (or don't, with
        /// `expect_match: false`); otherwise the descriptor is dropped.
        case headerValueMatch(key: String, value: String, expectMatch: Bool, headers: [HeaderMatcher])
        /// `destination_cluster`: the route's cluster as `destination_cluster`.
        case destinationCluster
    }

    public var actions: [Action]

    public typealias Entry = (key: String, value: String)

    /// Envoy's `RateLimitPolicyEntryImpl::populateDescriptors`: every action must produce its entry (or be
    /// skipped), else there is no descriptor.
    package func descriptor(_ request: RouteRequest, cluster: String, remote: IPAddress?) -> [Entry]? {
        var entries: [Entry] = []
        for action in actions {
            switch action {
            case .requestHeaders(let header, let key, let skipIfAbsent):
                guard let value = request.firstHeader(header) else {
                    if skipIfAbsent { continue }
                    return nil
                }
                entries.append((key, value))
            case .remoteAddress:
                guard let remote else { return nil }
                entries.append(("remote_address", remote.text))
            case .genericKey(let key, let value):
                entries.append((key, value))
            case .headerValueMatch(let key, let value, let expectMatch, let headers):
                let matched = headers.allSatisfy { $0.matches(request.header) }
                guard matched == expectMatch else { return nil }
                entries.append((key, value))
            case .destinationCluster:
                entries.append(("destination_cluster", cluster))
            }
        }
        return entries.isEmpty ? nil : entries
    }

    package static func decode(_ value: ConfigValue) throws -> RateLimitPolicy {
        let obj = try value.object()
        try obj.unsupported(["stage", "disable_key", "limit", "hits_addend", "apply_on_stream_done"])
        let actionsValue = try obj.required("actions")
        let actions = try actionsValue.array().map(decodeAction)
        if actions.isEmpty { throw actionsValue.error("a rate limit needs at least one action") }
        try obj.finish()
        return RateLimitPolicy(actions: actions)
    }

    private static func decodeAction(_ value: ConfigValue) throws -> Action {
        let obj = try value.object()
        try obj.unsupported([
            "source_cluster", "dynamic_metadata", "metadata", "extension", "masked_remote_address",
            "query_parameter_value_match", "query_parameters",
        ])
        guard let (key, v) = try obj.oneOf([
            "request_headers", "remote_address", "generic_key", "header_value_match", "destination_cluster",
        ]) else { fatalError("unreachable") }
        let action: Action
        switch key {
        case "request_headers":
            let o = try v.object()
            let header = try o.required("header_name").nonEmptyString().lowercased()
            let descriptorKey = try o.required("descriptor_key").nonEmptyString()
            let skip = try o.optional("skip_if_absent")?.bool() ?? false
            try o.finish()
            action = .requestHeaders(header: header, key: descriptorKey, skipIfAbsent: skip)
        case "remote_address":
            try v.object().finish()
            action = .remoteAddress
        case "destination_cluster":
            try v.object().finish()
            action = .destinationCluster
        case "generic_key":
            let o = try v.object()
            let descriptorValue = try o.required("descriptor_value").nonEmptyString()
            let descriptorKey = try o.optional("descriptor_key")?.string() ?? ""
            try o.finish()
            action = .genericKey(key: descriptorKey.isEmpty ? "generic_key" : descriptorKey, value: descriptorValue)
        default:
            let o = try v.object()
            let descriptorValue = try o.required("descriptor_value").nonEmptyString()
            let descriptorKey = try o.optional("descriptor_key")?.string() ?? ""
            let expect = try o.optional("expect_match")?.bool() ?? true
            let headersValue = try o.required("headers")
            let headers = try headersValue.array().map(HeaderMatcher.decode)
            if headers.isEmpty { throw headersValue.error("header_value_match needs at least one header") }
            try o.finish()
            action = .headerValueMatch(key: descriptorKey.isEmpty ? "header_match" : descriptorKey,
                                       value: descriptorValue, expectMatch: expect, headers: headers)
        }
        try obj.finish()
        return action
    }
}
