/// The Envoy v3 bootstrap, reduced to the parts Pilotfish runs.
public struct Bootstrap: Sendable {
    public var admin: Admin?
    public var listeners: [Listener]
    public var clusters: [Cluster]

    public struct Admin: Sendable {
        public var address: SocketAddressConfig
    }
}

public struct SocketAddressConfig: Sendable, Hashable, CustomStringConvertible {
    public var address: String
    public var port: Int

    public var description: String { address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)" }
}

public struct Listener: Sendable {
    public var name: String
    public var address: SocketAddressConfig
    public var network: NetworkFilter
    public var perConnectionBufferLimitBytes: Int
    /// IP_TRANSPARENT (IPV6_TRANSPARENT): accept connections TPROXY delivers for addresses not our own.
    public var transparent: Bool = false
    /// IP_FREEBIND: bind before the address exists.
    public var freebind: Bool = false
    /// The `envoy.filters.listener.original_dst` listener filter: connections carry their original
    /// destination (SO_ORIGINAL_DST, else the local address of a transparent socket).
    public var originalDestination: Bool = false

    /// The listener's one network filter.
    public enum NetworkFilter: Sendable {
        case httpConnectionManager(HTTPConnectionManagerConfig)
        case tcpProxy(TCPProxyConfig)
    }

    /// The HTTP connection manager, when that is the listener's filter.
    public var connectionManager: HTTPConnectionManagerConfig? {
        if case .httpConnectionManager(let c) = network { return c }
        return nil
    }
}

/// `envoy.filters.network.tcp_proxy`: bytes both ways between the downstream and one upstream host.
public struct TCPProxyConfig: Sendable {
    public var statPrefix: String
    public var cluster: String
    /// Closes both sides after this long without bytes either way; nil disables (Envoy: 0s). Default 1h.
    public var idleTimeout: ProtoDuration?
}

public struct HTTPConnectionManagerConfig: Sendable {
    public enum CodecType: String, Sendable, CaseIterable { case AUTO, HTTP1 }
    public var statPrefix: String
    public var codecType: CodecType
    public var routeConfig: RouteConfiguration
    public var httpFilters: [String]
    public var acceptHTTP10: Bool
    public var defaultHostForHTTP10: String?
    public var serverName: String
    public var useRemoteAddress: Bool
    public var requestTimeout: ProtoDuration?
    public var maxRequestHeadersKB: Int
}

public struct Cluster: Sendable {
    public enum DiscoveryType: String, Sendable, CaseIterable {
        case STATIC, STRICT_DNS, LOGICAL_DNS, ORIGINAL_DST
        /// Hosts come from DNS and are refreshed every `dns_refresh_rate`.
        public var resolvesNames: Bool { self == .STRICT_DNS || self == .LOGICAL_DNS }
    }
    public enum LBPolicy: String, Sendable, CaseIterable { case ROUND_ROBIN, CLUSTER_PROVIDED }
    public enum DNSLookupFamily: String, Sendable, CaseIterable { case AUTO, V4_ONLY, V6_ONLY, V4_PREFERRED, ALL }

    public var name: String
    public var type: DiscoveryType
    public var connectTimeout: ProtoDuration
    public var lbPolicy: LBPolicy
    public var endpoints: [Endpoint]
    public var dnsRefreshRate: ProtoDuration
    public var dnsLookupFamily: DNSLookupFamily
    public var perConnectionBufferLimitBytes: Int
    /// `upstream_bind_config.source_address`: the local address upstream sockets bind to (Istio binds
    /// inbound passthrough to 127.0.0.6 so capture rules can tell it apart).
    public var upstreamSourceAddress: SocketAddressConfig? = nil

    public struct Endpoint: Sendable {
        public var address: SocketAddressConfig
        public var weight: UInt32
        public var hostname: String?
    }
}
