import NIOCore

/// The Envoy v3 bootstrap, reduced to the parts Pilotfish runs.
public struct Bootstrap: Sendable {
    public var admin: Admin?
    public var listeners: [Listener]
    /// Static listeners an LDS listener at the same address replaces (the zero-config capture listeners of
    /// `--pod-defaults --xds-address`, until the control plane sends its own). Not from YAML: set by who builds
    /// the bootstrap.
    public var fallbackListeners: Set<String> = []
    public var clusters: [Cluster]
    /// `node.id` / `node.cluster`: who this proxy is (Envoy shows them in /server_info; SDS needs them set).
    public var nodeID: String? = nil
    public var nodeCluster: String? = nil
    /// `layered_runtime` (nil: none, as Envoy then runs with no runtime layers).
    public var layeredRuntime: LayeredRuntimeConfig? = nil
    /// How often histograms are flushed: the `interval` quantiles admin shows cover the last complete one.
    public var statsFlushInterval: ProtoDuration = .seconds(5)
    /// `overload_manager`: the global downstream connection limit (nil: no overload manager).
    public var overloadManager: OverloadManagerConfig? = nil
    /// `dynamic_resources`: clusters from a CDS file (nil: every cluster is static).
    public var dynamicResources: DynamicResources? = nil

    public struct Admin: Sendable {
        public var address: SocketAddressConfig
        /// `ignore_global_conn_limit`. Envoy 1.40 accepts it, but its admin listener never takes a place from the
        /// overload manager's connection count and is never refused for it, set or not (checked: admin answers
        /// while the limit is reached, and `listener.admin.downstream_global_cx_overflow` stays 0); the flag only
        /// matters to the deprecated runtime key `overload.global_downstream_max_connections`, which Pilotfish does
        /// not read. Kept so `/config_dump` shows it.
        public var ignoreGlobalConnLimit: Bool = false
        /// `access_log`: a line per admin request (see `AdminAccessLog`).
        public var accessLogs: [AccessLogConfig] = []
    }
}

public struct SocketAddressConfig: Sendable, Hashable, CustomStringConvertible {
    public var address: String
    public var port: Int

    package init(address: String, port: Int) {
        self.address = address
        self.port = port
    }

    public var description: String { address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)" }
}

public struct Listener: Sendable {
    public var name: String
    public var address: SocketAddressConfig
    public var filterChains: [FilterChain]
    /// Used when no filter chain matches (Envoy's `default_filter_chain`).
    public var defaultFilterChain: FilterChain?
    public var perConnectionBufferLimitBytes: Int
    /// IP_TRANSPARENT (IPV6_TRANSPARENT): accept connections TPROXY delivers for addresses not our own.
    public var transparent: Bool = false
    /// IP_FREEBIND: bind before the address exists.
    public var freebind: Bool = false
    /// `ignore_global_conn_limit`: this listener's connections neither take a place from the overload manager's
    /// global connection count nor are refused by it.
    public var ignoreGlobalConnLimit: Bool = false
    /// `tcp_backlog_size`: the listen queue; nil is Envoy's default, the kernel's `net.core.somaxconn`.
    public var tcpBacklogSize: Int?
    /// The `envoy.filters.listener.original_dst` listener filter: connections carry their original
    /// destination (SO_ORIGINAL_DST, else the local address of a transparent socket).
    public var originalDestination: Bool = false
    /// The `envoy.filters.listener.http_inspector` listener filter: sniffs HTTP/1.x and h2c so filter
    /// chains can match `application_protocols`.
    public var httpInspector: Bool = false
    /// The `envoy.filters.listener.tls_inspector` listener filter: reads the ClientHello's SNI and ALPN so
    /// chains can match `server_names`, `transport_protocol: tls` and `application_protocols`.
    public var tlsInspector: Bool = false
    /// How long listener filters may wait for bytes (Envoy default 15s; nil: forever), and whether a
    /// connection that runs out of time continues with what is known instead of being closed.
    public var listenerFiltersTimeout: ProtoDuration? = .seconds(15)
    /// Envoy's `envoy.filters.listener.original_src`: upstream connections of this listener's connections
    /// leave from the client's own address (a transparent socket) with this packet mark, so the app sees
    /// the real client and the TPROXY rules route its replies back to the sidecar.
    public var originalSourceMark: UInt32?
    /// `use_original_dst`: hand each connection to the listener whose address is the connection's original
    /// destination (exact, then the wildcard address on that port), if there is one.
    public var useOriginalDst: Bool = false
    /// `access_log`: one line per connection the listener accepted, when it closes (HTTP and tcp_proxy alike).
    public var accessLogs: [AccessLogConfig] = []
    /// `bind_to_port: false`: a virtual listener that only receives connections handed off to it.
    public var bindToPort: Bool = true
    public var continueOnListenerFiltersTimeout: Bool = false
    /// `traffic_direction`: which side of the pod the listener serves. Envoy uses it for tracing and for
    /// Istio's stats; Pilotfish records it (admin /config_dump shows the config as given).
    public var trafficDirection: TrafficDirection = .UNSPECIFIED
    public enum TrafficDirection: String, Sendable, CaseIterable { case UNSPECIFIED, INBOUND, OUTBOUND }

    /// The listener's one network filter.
    public enum NetworkFilter: Sendable {
        case httpConnectionManager(HTTPConnectionManagerConfig)
        case tcpProxy(TCPProxyConfig)
    }

    /// The first filter chain's filter (most listeners have one chain).
    public var network: NetworkFilter { (filterChains.first ?? defaultFilterChain!).network }

    /// The HTTP connection manager of the first filter chain, when it has one.
    public var connectionManager: HTTPConnectionManagerConfig? {
        if case .httpConnectionManager(let c) = network { return c }
        return nil
    }

    /// True when connections must be inspected before a filter chain can be chosen.
    public var needsChainSelection: Bool {
        useOriginalDst || httpInspector || tlsInspector || filterChains.count != 1 || defaultFilterChain != nil
            || filterChains[0].match != FilterChainMatch()
    }
}

public struct FilterChain: Sendable {
    public var name: String
    public var match: FilterChainMatch
    /// The terminal network filter.
    public var network: Listener.NetworkFilter
    /// `transport_socket` envoy.transport_sockets.tls (DownstreamTlsContext); nil for plaintext.
    public var tls: TLSContextConfig? = nil
    /// `envoy.filters.network.rbac` filters before the terminal one, in order: each connection is checked
    /// against them before the terminal filter sees it.
    public var networkRBAC: [RBACFilterConfig] = []
    /// `envoy.filters.network.connection_limit` filters, in order: a new connection over any of their limits is
    /// closed before anything else sees it.
    public var connectionLimits: [ConnectionLimitConfig] = []
}

/// `envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit`.
public struct ConnectionLimitConfig: Sendable, Equatable {
    public static let type = "type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit"
    /// `connection_limit.<stat_prefix>.*`.
    public var statPrefix: String
    /// Connections the filter lets through at once (per filter, across workers).
    public var maxConnections: Int
    /// How long a connection over the limit is held before it is closed (none: at once).
    public var delay: ProtoDuration?
}

/// The subset of Envoy's `filter_chain_match` Pilotfish selects on, in Envoy's order of precedence.
public struct FilterChainMatch: Sendable, Equatable {
    public var destinationPort: Int?
    public var prefixRanges: [CIDRRange] = []
    /// SNI names: exact, or `*.suffix` wildcards (the longest suffix wins).
    public var serverNames: [String] = []
    public var transportProtocol: String?
    public var applicationProtocols: [String] = []
    public var sourcePrefixRanges: [CIDRRange] = []
    public init() {}
}

/// `envoy.config.core.v3.CidrRange`.
public struct CIDRRange: Sendable, Equatable {
    public let bytes: [UInt8]
    public let prefixLength: Int

    public init?(address: String, prefixLength: Int?) {
        guard let sa = try? SocketAddress(ipAddress: address, port: 0) else { return nil }
        let b = sa.addressBytes
        let len = prefixLength ?? b.count * 8
        guard len >= 0 && len <= b.count * 8 else { return nil }
        self.bytes = b
        self.prefixLength = len
    }

    public func contains(_ address: SocketAddress) -> Bool {
        var b = address.addressBytes
        // An IPv4-mapped IPv6 address matches IPv4 ranges.
        if b.count == 16 && bytes.count == 4 && b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff {
            b = Array(b[12...])
        }
        guard b.count == bytes.count else { return false }
        var bits = prefixLength
        for i in 0..<b.count where bits > 0 {
            let n = min(8, bits)
            let mask = UInt8(truncatingIfNeeded: 0xff << (8 - n))
            if b[i] & mask != bytes[i] & mask { return false }
            bits -= n
        }
        return true
    }
}

extension SocketAddress {
    /// The IP address bytes (4 or 16), empty for Unix sockets.
    package var addressBytes: [UInt8] {
        switch self {
        case .v4(let a):
            return withUnsafeBytes(of: a.address.sin_addr) { Array($0) }
        case .v6(let a):
            return withUnsafeBytes(of: a.address.sin6_addr) { Array($0) }
        case .unixDomainSocket:
            return []
        }
    }
}

/// `envoy.filters.network.tcp_proxy`: bytes both ways between the downstream and one upstream host.
public struct TCPProxyConfig: Sendable {
    public var statPrefix: String
    public var cluster: String
    /// Closes both sides after this long without bytes either way; nil disables (Envoy: 0s). Default 1h.
    public var idleTimeout: ProtoDuration?
    /// `access_log`: one line per connection, when it closes.
    public var accessLogs: [AccessLogConfig] = []
}

public struct HTTPConnectionManagerConfig: Sendable {
    /// AUTO: HTTP/2 when TLS negotiated `h2` or the connection starts with the HTTP/2 preface, else HTTP/1.
    public enum CodecType: String, Sendable, CaseIterable { case AUTO, HTTP1, HTTP2 }
    public var statPrefix: String
    public var codecType: CodecType
    public var routeConfig: RouteConfiguration
    /// `rds`: `routeConfig` comes from this file (and is replaced with each accepted one); nil: inline.
    public var rds: RDSConfig? = nil
    /// `http_filters`, in order; the router is last.
    public var httpFilters: [HTTPFilterEntry]
    public var acceptHTTP10: Bool
    public var defaultHostForHTTP10: String?
    public var serverName: String
    public var useRemoteAddress: Bool
    public var requestTimeout: ProtoDuration?
    /// `request_headers_timeout` (default none): from the first byte of a request's headers to their last, on an
    /// HTTP/1.1 connection (an HTTP/2 stream's headers arrive as one block).
    public var requestHeadersTimeout: ProtoDuration?
    public var maxRequestHeadersKB: Int
    /// `stream_idle_timeout` (default 5 min; zero disables): a request with no activity for this long
    /// is ended (408 before the response started, else reset).
    public var streamIdleTimeout: ProtoDuration = .seconds(300)
    /// What the connection manager does to request and response headers (XFF, request id, via, ...).
    package var requestHeaders = ConnectionManagerHeaders()
    /// `add_user_agent`: filled in with the node's cluster and id at start-up.
    package var addUserAgent = false
    /// `upgrade_configs`: the HTTP/1.1 upgrades (lower-cased `Upgrade` type → enabled) the connection manager tunnels.
    public var upgradeConfigs: [String: Bool] = [:]
    /// Some upgrade may be tunnelled: the connection manager or a route enables one.
    public var mayUpgrade: Bool {
        // Routes from RDS may enable one later.
        rds != nil || upgradeConfigs.values.contains(true) || routeConfig.virtualHosts.contains { vh in
            vh.routes.contains { r in
                if case .forward(let f) = r.action { return f.upgradeConfigs.values.contains(true) }
                return false
            }
        }
    }
    /// `http2_protocol_options` for downstream HTTP/2 connections.
    public var http2Options = HTTP2ProtocolOptions()
    /// `common_http_protocol_options` for downstream connections.
    package var commonProtocolOptions = DownstreamHTTPProtocolOptions()
    /// `access_log`: the loggers every request of this connection manager is written to when its stream ends.
    public var accessLogs: [AccessLogConfig] = []
    /// `tracing`: nil when the connection manager does not trace.
    public var tracing: TracingConfig?
    /// `normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action`.
    public var pathNormalization = PathNormalization()

    /// The `envoy.filters.http.rbac` filters' configs, in order.
    package var httpRBAC: [RBACFilterConfig] { httpFilters.compactMap { $0.config as? RBACFilterConfig } }
}

/// The connection manager's `common_http_protocol_options` (downstream connections).
public struct DownstreamHTTPProtocolOptions: Sendable {
    /// A connection with no request for this long is closed (Envoy's default: 1 hour).
    public var idleTimeout: ProtoDuration? = .seconds(3600)
    /// A connection this old gets `connection: close` on its next response, or is closed when idle.
    public var maxConnectionDuration: ProtoDuration?
    /// The Nth request of a connection is its last (`connection: close`).
    public var maxRequestsPerConnection: Int?
    /// `max_headers_count`: a request with more header fields (Host included) is refused as too large (431 over
    /// HTTP/1.1, a reset over HTTP/2), as Envoy does; Envoy's default is 100.
    public var maxHeadersCount = 100
}

public struct Cluster: Sendable, Equatable {
    public enum DiscoveryType: String, Sendable, CaseIterable {
        case STATIC, STRICT_DNS, LOGICAL_DNS, ORIGINAL_DST
        /// Hosts come from an EDS file (`eds_cluster_config`).
        case EDS
        /// Hosts come from DNS and are refreshed every `dns_refresh_rate`.
        public var resolvesNames: Bool { self == .STRICT_DNS || self == .LOGICAL_DNS }
    }
    public enum LBPolicy: String, Sendable, CaseIterable {
        case ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH, MAGLEV, CLUSTER_PROVIDED
    }
    public enum DNSLookupFamily: String, Sendable, CaseIterable { case AUTO, V4_ONLY, V6_ONLY, V4_PREFERRED, ALL }

    public var name: String
    public var type: DiscoveryType
    public var connectTimeout: ProtoDuration
    public var lbPolicy: LBPolicy {
        get { loadBalancing.policy }
        set { loadBalancing.policy = newValue }
    }
    public var loadBalancing = LoadBalancingConfig()
    public var healthChecks: [HealthCheckConfig] = []
    /// nil: no outlier detection (Envoy's default).
    public var outlierDetection: OutlierDetectionConfig?
    /// Always one entry per priority, DEFAULT first, defaults filled in.
    /// Envoy's defaults unless set: one array shared by every cluster that sets none.
    public var circuitBreakers: [CircuitBreakerThresholds] = CircuitBreakerThresholds.defaults
    public var httpProtocolOptions = UpstreamHTTPProtocolOptions()
    public var endpoints: [Endpoint]
    /// `eds_cluster_config` of an EDS cluster: where its endpoints come from.
    public var eds: EDSClusterConfig? = nil
    public var dnsRefreshRate: ProtoDuration
    public var dnsLookupFamily: DNSLookupFamily
    public var perConnectionBufferLimitBytes: Int
    /// `upstream_bind_config.source_address`: the local address upstream sockets bind to (Istio binds
    /// inbound passthrough to 127.0.0.6 so capture rules can tell it apart).
    public var upstreamSourceAddress: SocketAddressConfig? = nil
    /// ORIGINAL_DST: how long an unused host (and its idle connections) is kept. Envoy's default 5s.
    public var cleanupInterval: ProtoDuration = .seconds(5)
    /// `transport_socket` envoy.transport_sockets.tls (UpstreamTlsContext); nil for plaintext.
    public var tls: TLSContextConfig? = nil

    public struct Endpoint: Sendable, Equatable {
        public var address: SocketAddressConfig
        public var weight: UInt32
        public var hostname: String?
        /// Priority and locality (`Cluster+Locality.swift`).
        public var group = EndpointGroup()
        public var healthStatus = EndpointHealthStatus.UNKNOWN
        /// `endpoint.health_check_config.port_value`: active health checks go to this port instead (nil: the
        /// endpoint's own).
        public var healthCheckPort: Int? = nil
    }

    public init(name: String, type: DiscoveryType, connectTimeout: ProtoDuration, lbPolicy: LBPolicy,
                endpoints: [Endpoint], dnsRefreshRate: ProtoDuration, dnsLookupFamily: DNSLookupFamily,
                perConnectionBufferLimitBytes: Int) {
        self.name = name
        self.type = type
        self.connectTimeout = connectTimeout
        self.endpoints = endpoints
        self.dnsRefreshRate = dnsRefreshRate
        self.dnsLookupFamily = dnsLookupFamily
        self.perConnectionBufferLimitBytes = perConnectionBufferLimitBytes
        self.loadBalancing.policy = lbPolicy
    }
}
