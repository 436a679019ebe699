/// An HTTP listener's immutable settings as its connections use them.
struct ListenerRuntime: Sendable {
    let config: Listener
    let hcm: HTTPConnectionManagerConfig
    let routes: RouteConfiguration
    let stats: HTTPStats
    let clusters: ClusterManager
    let maxHeaderBytes: Int
    let hostname: String
}

/// A tcp_proxy listener's immutable settings.
struct TCPListenerRuntime: Sendable {
    let config: Listener
    let proxy: TCPProxyConfig
    let stats: TCPProxyStats
    let cluster: ClusterManager.Entry
}
