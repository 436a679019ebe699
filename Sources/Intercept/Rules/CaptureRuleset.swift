/// The capture rules as data, independent of the backend. Built once from a `CapturePolicy`; the nftables
/// renderer, the netlink encoder and the iptables renderer all read this one value, so dry-run output and
/// what is applied cannot drift apart.
public struct CaptureRuleset: Equatable, Sendable {
    public var chains: [CaptureChain]

    public func chain(named name: String) -> CaptureChain? { chains.first { $0.name == name } }
    public var ruleCount: Int { chains.reduce(0) { $0 + $1.rules.count } }
}

/// Which netfilter hook a base chain attaches to, and in which role (its nftables type and priority, its
/// iptables table).
public enum CaptureHook: Equatable, Sendable {
    /// nat PREROUTING (dstnat, -100): REDIRECT of inbound connections.
    case natPrerouting
    /// mangle PREROUTING (filter type, -150): TPROXY of inbound connections.
    case manglePrerouting
    /// nat OUTPUT (-100): REDIRECT of outbound connections.
    case natOutput
    /// mangle OUTPUT (route type, -150): a changed mark re-routes the packet.
    case mangleOutput

    public var table: NetfilterTable {
        switch self {
        case .natPrerouting, .natOutput: return .nat
        case .manglePrerouting, .mangleOutput: return .mangle
        }
    }
}

/// The iptables table a chain lives in. nftables has one `inet` table of ours; this only matters for iptables.
public enum NetfilterTable: String, Equatable, Sendable {
    case nat, mangle
}

public struct CaptureChain: Equatable, Sendable {
    public var name: String
    /// `nil` for regular chains reached by `jump`.
    public var hook: CaptureHook?
    /// iptables table of the chain (base chains: their hook's table; regular chains: their callers').
    public var table: NetfilterTable
    public var rules: [CaptureRule]
}

public struct CaptureRule: Equatable, Sendable {
    public var matches: [CaptureMatch]
    public var action: CaptureAction
    /// Every rule says why it exists; nftables shows it as `comment`, iptables as `-m comment`.
    public var comment: String

    public init(_ matches: [CaptureMatch], _ action: CaptureAction, _ comment: String) {
        self.matches = matches
        self.action = action
        self.comment = comment
    }

    /// The address family the rule is limited to by its matches, if any.
    public var family: CIDR.Family? {
        for m in matches {
            switch m {
            case .family(let f): return f
            case .sourceAddress(let c, _), .destinationAddress(let c, _): return c.family
            default: continue
            }
        }
        return nil
    }
}

public enum TransportProtocol: String, Equatable, Sendable {
    case tcp, udp
    var number: UInt8 { self == .tcp ? 6 : 17 }
}

public enum CaptureMatch: Equatable, Sendable {
    case family(CIDR.Family)
    case transport(TransportProtocol)
    /// Implies `transport(proto)`.
    case destinationPort(TransportProtocol, UInt16)
    case inputInterface(String)
    case outputInterface(String)
    case sourceAddress(CIDR, negated: Bool)
    case destinationAddress(CIDR, negated: Bool)
    case socketUID(UInt32, negated: Bool)
    case socketGID(UInt32, negated: Bool)
    case mark(UInt32)
    case connectionMark(UInt32)
    /// A local socket with IP_TRANSPARENT owns the packet (an established TPROXY connection).
    case transparentSocket
    /// The packet travels in the reply direction of its connection (conntrack).
    case replyDirection
}

public enum CaptureAction: Equatable, Sendable {
    case jump(String)
    case `return`
    /// NAT to a local port (REDIRECT).
    case redirect(port: UInt16)
    /// Deliver to the local listener on `port` unchanged, marking the packet for the local route table.
    case tproxy(port: UInt16, mark: UInt32)
    /// Mark the packet for the local route table and stop (packets of established TPROXY connections).
    case divert(mark: UInt32)
    /// Answer with a TCP reset: what a captured connection gets when no sidecar listens, instead of
    /// silently reaching the app uncaptured.
    case refuse
    /// Copy the packet mark into the connection mark.
    case saveMark
    /// Copy the connection mark back into the packet mark (re-routes in a route chain).
    case restoreMark
}
