import MeshCapture

/// Everything `sidecar-init` needs to decide which packets go to the sidecar: a plain value, validated once
/// and rendered into nftables or iptables rules without touching the system.
public struct CapturePolicy: Equatable, Sendable {
    public var mode: CaptureMode = .tproxy
    /// Where inbound connections are captured to (Istio's 15006).
    public var inboundPort: UInt16 = CaptureDefaults.inboundPort
    /// Where outbound connections are captured to (Istio's 15001).
    public var outboundPort: UInt16 = CaptureDefaults.outboundPort
    /// Traffic of this user and group is the sidecar's own and is never captured.
    public var proxyUID: UInt32 = CaptureDefaults.proxyUID
    public var proxyGID: UInt32 = CaptureDefaults.proxyGID
    public var includeInboundPorts: PortSelection = .all
    public var excludeInboundPorts: [UInt16] = []
    public var excludeOutboundPorts: [UInt16] = []
    /// `nil` means every destination.
    public var includeOutboundCIDRs: [CIDR]? = nil
    public var excludeOutboundCIDRs: [CIDR] = []
    public var excludeInterfaces: [String] = []
    /// The sidecar's own ports (admin, readiness), never captured inbound.
    public var proxyPorts: [UInt16] = CaptureDefaults.proxyPorts
    /// Packet mark of TPROXY-delivered and original-source connections, and its routing table.
    public var tproxyMark: UInt32 = CaptureDefaults.tproxyMark
    public var routeTable: UInt32 = CaptureDefaults.routeTable
    public var ipv6: Bool = true
    /// When set, DNS (UDP and TCP port 53) from the app is redirected to this port.
    public var dnsCapturePort: UInt16? = nil

    public init() {}

    /// Inbound ports that are never captured: the sidecar's own ports, then the user's exclusions.
    public var effectiveInboundExclusions: [UInt16] {
        var seen = Set<UInt16>()
        return (proxyPorts + excludeInboundPorts).filter { seen.insert($0).inserted }
    }

    /// Checks everything that can be checked without the kernel, so that nothing is half-applied later.
    public func validate() throws(PolicyError) {
        if inboundPort == outboundPort {
            throw PolicyError("--inbound-port and --outbound-port are both \(inboundPort); the sidecar needs two different capture ports")
        }
        if let dns = dnsCapturePort, dns == inboundPort || dns == outboundPort {
            throw PolicyError("--dns-port \(dns) collides with a capture port; choose a port of its own")
        }
        if case .only(let ports) = includeInboundPorts {
            for p in ports where excludeInboundPorts.contains(p) {
                throw PolicyError("inbound port \(p) is both included (--include-inbound-ports) and excluded (--exclude-inbound-ports); remove it from one")
            }
            for p in ports where p == inboundPort || p == outboundPort {
                throw PolicyError("--include-inbound-ports lists \(p), which is a capture port; capturing it would loop")
            }
        }
        if let include = includeOutboundCIDRs {
            for c in include where excludeOutboundCIDRs.contains(c) {
                throw PolicyError("CIDR \(c) is both included (--include-outbound-cidrs) and excluded (--exclude-outbound-cidrs); remove it from one")
            }
        }
        if !ipv6 {
            let v6 = (includeOutboundCIDRs ?? []) + excludeOutboundCIDRs
            if let c = v6.first(where: { $0.family == .ipv6 }) {
                throw PolicyError("IPv6 CIDR \(c) given while IPv6 capture is off (--ipv6=false); remove it or turn IPv6 on")
            }
        }
        for name in excludeInterfaces {
            try Self.validateInterfaceName(name)
        }
        if tproxyMark == 0 {
            throw PolicyError("--tproxy-mark must not be 0: unmarked packets carry 0")
        }
        if routeTable == 0 || routeTable == 253 || routeTable == 254 || routeTable == 255 {
            throw PolicyError("--route-table \(routeTable) is reserved by the kernel (0 unspec, 253 default, 254 main, 255 local); choose another, e.g. \(CaptureDefaults.routeTable)")
        }
    }

    static func validateInterfaceName(_ name: String) throws(PolicyError) {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= 15 else {
            throw PolicyError("interface name '\(name)' must be 1 to 15 bytes long")
        }
        let bad = bytes.contains { $0 <= 0x20 || $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "'") || $0 == UInt8(ascii: "\\") || $0 >= 0x7f }
        if bad || name == "." || name == ".." {
            throw PolicyError("interface name '\(name)' contains characters an interface name cannot have")
        }
    }
}
