/// How captured inbound traffic reaches the sidecar. Outbound traffic is redirected (NAT) in both modes,
/// as Istio does: TPROXY only matters where the original source address must survive.
public enum CaptureMode: String, Sendable, CaseIterable {
    /// NAT REDIRECT; the sidecar recovers the original destination with SO_ORIGINAL_DST.
    case redirect
    /// TPROXY on the inbound side: the connection keeps its addresses and lands on an IP_TRANSPARENT listener.
    case tproxy

    public init?(flag: String) {
        self.init(rawValue: flag.lowercased())
    }
}
