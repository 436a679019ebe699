import NIOCore
import SidecarCore
import SidecarUpstream
import SidecarTracing

/// An HTTP listener's immutable settings as its connections use them. A class: every connection's handler (and
/// every HTTP/2 stream's) holds it, and as a struct its 2.2 KB were copied into each of them (and into the codec
/// selector and its install closure) with a retain per reference inside.
final class ListenerRuntime: Sendable {
    let config: Listener
    let hcm: HTTPConnectionManagerConfig
    /// The listener generation this chain belongs to (its connections drain with it).
    let generation: Int
    /// Where this connection manager's route table is in every config snapshot (`ConfigSnapshot.routeTables`).
    let routeTable: Int
    let stats: HTTPStats
    let maxHeaderBytes: Int
    let hostname: String
    /// DownstreamTlsContext of this filter chain.
    let tls: TransportTLS?
    /// The chain's `envoy.filters.network.rbac` filters, checked when a connection starts.
    let networkRBAC: [RBACFilter]
    /// The chain's `envoy.filters.network.connection_limit` filters, checked first.
    let connectionLimits: [ConnectionLimiter]
    /// The connection manager's `http_filters`, ready to make each stream's filters (the router last).
    let httpFilters: [any HTTPFilterFactory]
    /// Some HTTP filter reads the connection's addresses or TLS peer (RBAC): looked up once per connection.
    let filtersReadConnection: Bool
    /// The connection manager's request/response header rules, with the node's identity filled in.
    let requestHeaders: ConnectionManagerHeaders
    /// The connection manager's tracer (`tracing`); nil when it does not trace.
    let tracer: HTTPTracer?
    /// A child span per upstream attempt (the router's `start_child_span`, or `spawn_upstream_span`).
    let startChildSpan: Bool

    init(config: Listener, hcm: HTTPConnectionManagerConfig, generation: Int = 0, routeTable: Int, stats: HTTPStats, maxHeaderBytes: Int,
         hostname: String, tls: TransportTLS? = nil, networkRBAC: [RBACFilter] = [],
         connectionLimits: [ConnectionLimiter] = [], httpFilters: [any HTTPFilterFactory] = [],
         filtersReadConnection: Bool = false, requestHeaders: ConnectionManagerHeaders = ConnectionManagerHeaders(),
         tracer: HTTPTracer? = nil, startChildSpan: Bool = false) {
        self.config = config
        self.hcm = hcm
        self.generation = generation
        self.routeTable = routeTable
        self.stats = stats
        self.maxHeaderBytes = maxHeaderBytes
        self.hostname = hostname
        self.tls = tls
        self.networkRBAC = networkRBAC
        self.connectionLimits = connectionLimits
        self.httpFilters = httpFilters
        self.filtersReadConnection = filtersReadConnection
        self.requestHeaders = requestHeaders
        self.tracer = tracer
        self.startChildSpan = startChildSpan
    }
}

/// A tcp_proxy listener's immutable settings.
struct TCPListenerRuntime: Sendable {
    let config: Listener
    let proxy: TCPProxyConfig
    let stats: TCPProxyStats
    /// The listener generation this chain belongs to (its connections drain with it).
    var generation = 0
    /// Where this tcp_proxy's cluster is in every config snapshot (`ConfigSnapshot.tcpProxyClusters`).
    let tcpProxy: Int
    /// DownstreamTlsContext of this filter chain.
    var tls: TransportTLS? = nil
    /// The chain's `envoy.filters.network.rbac` filters, checked before the upstream is connected.
    var networkRBAC: [RBACFilter] = []
    /// The chain's `envoy.filters.network.connection_limit` filters, checked first.
    var connectionLimits: [ConnectionLimiter] = []
}

/// One filter chain, ready to take a connection.
enum ChainRuntime: Sendable {
    case http(ListenerRuntime)
    case tcp(TCPListenerRuntime)

    var tls: TransportTLS? {
        switch self {
        case .http(let r): return r.tls
        case .tcp(let r): return r.tls
        }
    }

    var connectionLimits: [ConnectionLimiter] {
        switch self {
        case .http(let r): return r.connectionLimits
        case .tcp(let r): return r.connectionLimits
        }
    }

    /// The connection itself is logged: by the listener's `access_log`, or tcp_proxy's.
    var logsConnection: Bool {
        switch self {
        case .http(let r): return !r.config.accessLogs.isEmpty
        case .tcp(let r): return !r.config.accessLogs.isEmpty || !r.proxy.accessLogs.isEmpty
        }
    }
}

/// A listener whose connections are inspected before a filter chain is chosen.
struct ChainedListenerRuntime: Sendable {
    /// The listener generation's tag.
    let tag: Int
    let config: Listener
    let selector: FilterChainSelector
    /// Index-aligned with `config.filterChains`, then the default chain.
    let chains: [ChainRuntime]
    let stats: ListenerStats
}
