/// The defaults `sidecar-init` captures with and `sidecar --pod-defaults` listens with, kept in one place so
/// the two agree without any file (Istio's values, so people moving over find the same ports).
public enum CaptureDefaults {
    /// Where inbound connections are captured to, and the sidecar's inbound listener.
    public static let inboundPort: UInt16 = 15006
    /// Where outbound connections are captured to, and the sidecar's outbound listener.
    public static let outboundPort: UInt16 = 15001
    /// The sidecar's admin listener (on 127.0.0.1).
    public static let adminPort: UInt16 = 15000
    /// The sidecar's readiness listener (`GET /healthz/ready`).
    public static let readinessPort: UInt16 = 15021
    /// The sidecar's own ports, never captured inbound: admin, then readiness.
    public static let proxyPorts: [UInt16] = [adminPort, readinessPort]

    /// The sidecar runs as this user and group; their traffic is the sidecar's own and is never captured.
    public static let proxyUID: UInt32 = 1337
    public static let proxyGID: UInt32 = 1337

    /// Packet mark of TPROXY-delivered and original-source connections (sidecar-init's `--tproxy-mark`,
    /// the sidecar's original_src mark).
    public static let tproxyMark: UInt32 = 1337
    /// The routing table TPROXY's policy routing uses (sidecar-init's `--route-table`).
    public static let routeTable: UInt32 = 133
}
