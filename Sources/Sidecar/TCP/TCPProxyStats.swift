import SidecarCore

/// `tcp.<stat_prefix>.*` slots of one tcp_proxy filter, with Envoy's names.
public struct TCPProxyStats: Sendable {
    public let cxTotal, noRoute, rxBytes, txBytes, idleTimeout, pausedReading, resumedReading: Int

    init(prefix: String, registry r: StatsRegistry) {
        let label = ("envoy_tcp_prefix", prefix)
        func reg(_ s: String) -> Int {
            r.register("tcp.\(prefix).\(s)", .counter, family: "tcp.\(s)", labels: [label])
        }
        cxTotal = reg("downstream_cx_total")
        noRoute = reg("downstream_cx_no_route")
        rxBytes = reg("downstream_cx_rx_bytes_total")
        txBytes = reg("downstream_cx_tx_bytes_total")
        idleTimeout = reg("idle_timeout")
        pausedReading = reg("downstream_flow_control_paused_reading_total")
        resumedReading = reg("downstream_flow_control_resumed_reading_total")
    }
}
