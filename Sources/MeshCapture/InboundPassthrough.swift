/// The source address of the sidecar's inbound passthrough connections (Istio's choice): with REDIRECT
/// capture the sidecar connects to the app from it, and the capture rules leave connections from it alone.
public enum InboundPassthrough {
    /// 127.0.0.6, in network order.
    public static let ipv4: [UInt8] = [127, 0, 0, 6]
    /// ::6, in network order.
    public static let ipv6: [UInt8] = Array(repeating: 0, count: 15) + [6]

    /// The IPv4 address as text, as the sidecar's `upstream_bind_config` names it.
    public static var ipv4Text: String { ipv4.map(String.init).joined(separator: ".") }
}
