/// A listener's immutable settings as its connections use them.
struct ListenerRuntime: Sendable {
    let config: Listener
    let routes: RouteConfiguration
    let stats: HTTPStats
    let clusters: ClusterManager
    let maxHeaderBytes: Int
    let hostname: String
}
