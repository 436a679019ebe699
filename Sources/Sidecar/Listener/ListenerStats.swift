import SidecarCore

/// `listener.<address>.*` slots (Envoy names the listener by its address, `:` as `_`).
public struct ListenerStats: Sendable {
    public let cxTotal, noFilterChainMatch: Int
    /// Connections closed at accept because the overload manager's global connection count was full
    /// (`GlobalConnectionLimit`).
    public let globalCxOverflow: Int

    init(address: SocketAddressConfig, registry r: StatsRegistry) {
        let name = "\(address.address)_\(address.port)"
        let label = ("envoy_listener_address", name)
        cxTotal = r.register("listener.\(name).downstream_cx_total", .counter, family: "listener.downstream_cx_total", labels: [label])
        noFilterChainMatch = r.register(
            "listener.\(name).no_filter_chain_match", .counter, family: "listener.no_filter_chain_match", labels: [label])
        globalCxOverflow = r.register(
            "listener.\(name).downstream_global_cx_overflow", .counter, family: "listener.downstream_global_cx_overflow",
            labels: [label])
    }
}
