/// The bootstrap's `overload_manager`, reduced to the one resource monitor Pilotfish runs:
/// `envoy.resource_monitors.global_downstream_max_connections`.
///
/// Envoy 1.40 makes that monitor a *proactive* resource: every listener that does not set
/// `ignore_global_conn_limit` takes one place per accepted connection from a counter shared by all workers and
/// listeners, and gives it back when the connection closes. A connection accepted while
/// `max_active_downstream_connections` places are held is closed at once, before any listener filter or filter chain
/// sees it; it is counted in `listener.<address>.downstream_global_cx_overflow` and in
/// `overload.envoy.resource_monitors.global_downstream_max_connections.failed_updates`. The admin listener takes no
/// place and is never refused.
///
/// Reactive monitors (heap, cgroup memory, file descriptors…), `actions`, `loadshed_points` and
/// `buffer_factory_config` act on the rest of the proxy and are config errors naming them.
public struct OverloadManagerConfig: Sendable, Equatable {
    public static let downstreamConnectionsMonitor = "envoy.resource_monitors.global_downstream_max_connections"
    public static let downstreamConnectionsType =
        "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"

    /// `max_active_downstream_connections` of the downstream-connections monitor; nil when it is not configured
    /// (then no connection is refused for the global count, as in Envoy without the monitor).
    public var maxActiveDownstreamConnections: Int?

    public init(maxActiveDownstreamConnections: Int? = nil) {
        self.maxActiveDownstreamConnections = maxActiveDownstreamConnections
    }
}

extension OverloadManagerConfig {
    package static func decode(_ value: ConfigValue) throws -> OverloadManagerConfig {
        let obj = try value.object()
        try obj.unsupported(["actions", "loadshed_points", "buffer_factory_config"])
        // How often reactive monitors are sampled: Envoy checks it (a Duration) but a proactive monitor is never
        // sampled, so with the only monitor we run it changes nothing.
        _ = try obj.optional("refresh_interval")?.duration()
        var config = OverloadManagerConfig()
        var seen = Set<String>()
        for monitor in try obj.list("resource_monitors") {
            let m = try monitor.object()
            let nameValue = try m.required("name")
            let name = try nameValue.nonEmptyString()
            guard seen.insert(name).inserted else {
                // Envoy 1.40: "Duplicate resource monitor <name>".
                throw nameValue.error("duplicate resource monitor '\(name)'")
            }
            let typed = try m.required("typed_config").object()
            let type = try typed.required("@type")
            guard try type.string() == downstreamConnectionsType else {
                throw type.error("resource monitor type '\(try type.string())' is not supported by Pilotfish; "
                    + "supported: \(downstreamConnectionsType)")
            }
            guard name == downstreamConnectionsMonitor else {
                throw nameValue.error("the DownstreamConnectionsConfig monitor must be named "
                    + "'\(downstreamConnectionsMonitor)' (Envoy finds the proactive resource by that name)")
            }
            // Envoy's proto rule: greater than 0 (an int64; more than Int can count is no limit anyway).
            let max = try typed.required("max_active_downstream_connections").int(min: 1)
            config.maxActiveDownstreamConnections = Int(max)
            try typed.finish()
            try m.finish()
        }
        try obj.finish()
        return config
    }
}
