import NIOCore
import NIOHTTP1
import SidecarCore

/// `pilotfish.filters.http.app_probes`: answers the kubelet's rewritten probes on the sidecar's health port
/// (`GET /app-health/<container>/livez|readyz|startupz`) by running the app's original probe against it on loopback
/// (see Injection's `ProbeRewrite`): 200 `ok` when it passes, 503 with the reason when it does not. Other paths go
/// on down the chain. `sidecar --pod-defaults` puts it on the readiness listener when `PILOTFISH_APP_PROBES` is set.
///
/// Pilotfish's own filter, not an Envoy extension.
final class AppProbesFilter: HTTPStreamFilter, HTTPFilterFactory, @unchecked Sendable {
    // Immutable after init; shared by every worker.
    static let typeURL = "type.googleapis.com/pilotfish.filters.http.app_probes.v1.AppProbes"
    static let registration = HTTPFilterRegistration(
        typeURL: typeURL, name: "pilotfish.filters.http.app_probes",
        decode: { try AppProbesConfig.decode($0) },
        fields: [
            .init("pilotfish.filters.http.app_probes.v1.AppProbes", type: typeURL, "probes"),
            .init("pilotfish.filters.http.app_probes.v1.Probe", "http_get tcp_socket grpc timeout_seconds"),
            .init("pilotfish.filters.http.app_probes.v1.HTTPGet", "port path scheme http_headers"),
            .init("pilotfish.filters.http.app_probes.v1.Header", "name value"),
            .init("pilotfish.filters.http.app_probes.v1.TCPSocket", "port"),
            .init("pilotfish.filters.http.app_probes.v1.GRPC", "port service"),
        ])

    let name: String
    let config: AppProbesConfig

    init(name: String, config: AppProbesConfig) {
        self.name = name
        self.config = config
    }

    func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter { self }

    func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        // The path as route matching sees it (query and fragment off).
        guard let probe = config.probes[String(stream.request.pathWithoutQuery)] else { return .continue }
        let id = stream.streamID
        AppProbeRunner.run(probe, on: stream.eventLoop).whenComplete { result in
            guard stream.active, stream.streamID == id else { return }
            switch result {
            case .success:
                stream.sendLocalReply(status: .ok, body: "ok\n", details: "app_probe_passed")
            case .failure(let error):
                stream.sendLocalReply(status: .serviceUnavailable, body: "app probe failed: \(error)\n",
                                      details: "app_probe_failed")
            }
        }
        return .stopIteration
    }
}
