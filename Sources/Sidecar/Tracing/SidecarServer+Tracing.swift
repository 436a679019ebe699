import Foundation
import NIOCore
import NIOPosix
import SidecarCore
import SidecarTracing

/// The tracers of the listeners' connection managers: one span exporter per distinct tracer config, made (and
/// its stats registered) with the listener that first names it, running on one event loop of its own.
extension SidecarServer {
    /// The key connection managers with the same tracer config share an exporter by.
    static func exporterKey(_ provider: TracerConfig) -> String { "\(provider)" }

    /// The exporters `listeners`' tracers need and the server does not have yet (at start, and for listeners
    /// LDS adds).
    func makeSpanExporters(for listeners: [Listener]) {
        let providers = listeners.flatMap { ConfigSnapshot.networkChains($0) }.compactMap { chain -> TracerConfig? in
            guard case .httpConnectionManager(let hcm) = chain.network else { return nil }
            return hcm.tracing?.provider
        }
        guard !providers.isEmpty else { return }
        let loop = tracingGroup.next()
        for provider in providers {
            let key = Self.exporterKey(provider)
            guard spanExporters[key] == nil,
                  let cluster = bootstrap.clusters.first(where: { $0.name == provider.collectorCluster })
            else { continue }
            let hosts = CollectorHosts(cluster)
            let exporter = SpanExporter.make(
                provider, loop: loop, localAddress: Self.localAddress, serviceCluster: bootstrap.nodeCluster ?? "",
                resolve: { hosts.address() })
            exporter.registerStats(registry)
            spanExporters[key] = exporter
        }
    }

    /// The connection manager's tracer, for a listener with `direction`.
    func tracer(_ hcm: HTTPConnectionManagerConfig, egress: Bool) -> HTTPTracer? {
        guard let tracing = hcm.tracing else { return nil }
        let exporter = tracing.provider.flatMap { spanExporters[Self.exporterKey($0)] }
        return HTTPTracer(config: tracing, egress: egress, exporter: exporter, nodeID: bootstrap.nodeID ?? "",
                          environment: ProcessInfo.processInfo.environment)
    }

    /// At stop: what the workers still hold goes to the exporters, which get a moment to send it.
    func drainSpanExporters() {
        guard !spanExporters.isEmpty else { return }
        for w in workers { try? w.loop.submit { w.worker.value.flushSpans() }.wait() }
        for e in spanExporters.values { e.drain(timeout: .seconds(2)) }
    }
}
