/// A route's `request_mirror_policies` entry: a copy of each selected request goes to `cluster`, fire and forget
/// (Envoy's shadowing): the copy's answer is read and dropped, and nothing about it reaches the client.
public struct MirrorPolicy: Sendable {
    public var cluster: String
    /// `runtime_fraction`'s default: the share of requests mirrored (100 % when unset).
    package var fraction: RuntimeFractionalPercent
    /// `disable_shadow_host_suffix_append`: keep the host as it is instead of adding `-shadow`.
    public var keepHost: Bool
    /// `cluster` in the config snapshot that runs the route (`RouteConfiguration.resolvingClusters`).
    package var slot: ClusterSlot? = nil

    package static func decode(_ value: ConfigValue) throws -> MirrorPolicy {
        let obj = try value.object()
        try obj.unsupported(["cluster_header", "trace_sampled", "request_headers_mutations", "host_rewrite_literal"])
        let cluster = try obj.required("cluster").nonEmptyString()
        let fraction = try obj.optional("runtime_fraction").map(FractionalPercent.decodeRuntime) ?? .hundred
        let keepHost = try obj.optional("disable_shadow_host_suffix_append")?.bool() ?? false
        try obj.finish()
        return MirrorPolicy(cluster: cluster, fraction: fraction, keepHost: keepHost)
    }

    /// Envoy's shadow host: `-shadow` after the host name, before any port (`api.example.com:8080` →
    /// `api.example.com-shadow:8080`).
    package static func shadowHost(_ authority: String) -> String {
        if authority.hasPrefix("[") {
            // An IPv6 literal: the port, if any, follows the closing bracket.
            if let close = authority.lastIndex(of: "]") {
                let host = authority[...close]
                return host + "-shadow" + authority[authority.index(after: close)...]
            }
            return authority + "-shadow"
        }
        if let colon = authority.lastIndex(of: ":") {
            return authority[..<colon] + "-shadow" + authority[colon...]
        }
        return authority + "-shadow"
    }
}
