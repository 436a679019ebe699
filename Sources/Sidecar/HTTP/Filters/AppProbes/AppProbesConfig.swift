import NIOCore
import SidecarCore

/// One of the app's probes as `sidecar inject` recorded it (`PILOTFISH_APP_PROBES`): what the kubelet would have
/// done, against the app on loopback.
struct AppProbe: Sendable, Equatable {
    enum Action: Sendable, Equatable {
        /// A GET; 200 to 399 is success, as the kubelet counts it.
        case http(path: String, https: Bool, headers: [(String, String)])
        /// A TCP connect.
        case tcp
        /// `grpc.health.v1.Health/Check` over h2c; SERVING is success.
        case grpc(service: String)

        static func == (a: Action, b: Action) -> Bool {
            switch (a, b) {
            case (.http(let p1, let s1, let h1), .http(let p2, let s2, let h2)):
                return p1 == p2 && s1 == s2 && h1.elementsEqual(h2, by: { $0 == $1 })
            case (.tcp, .tcp): return true
            case (.grpc(let x), .grpc(let y)): return x == y
            default: return false
            }
        }
    }

    var action: Action
    var port: Int
    /// The probe's `timeoutSeconds` (the kubelet's default is 1).
    var timeout: TimeAmount
}

/// `pilotfish.filters.http.app_probes`: the probes by the path the kubelet now asks the sidecar for
/// (`/app-health/<container>/livez|readyz|startupz`).
struct AppProbesConfig: Sendable {
    var probes: [String: AppProbe]

    static func decode(_ obj: ConfigObject) throws -> AppProbesConfig {
        var probes: [String: AppProbe] = [:]
        for (path, value) in try obj.required("probes").map() {
            guard path.hasPrefix("/") else { throw value.error("a probe's path must start with /") }
            let p = try value.object()
            let timeout = try p.optional("timeout_seconds").map { try $0.int(min: 1, max: 3600) } ?? 1
            let actions = ["http_get", "tcp_socket", "grpc"]
            guard let (key, spec) = try p.oneOf(actions) else { fatalError("unreachable: oneOf is required") }
            let s = try spec.object()
            let port = Int(try s.required("port").int(min: 1, max: 65535))
            let action: AppProbe.Action
            switch key {
            case "http_get":
                let scheme = try s.optional("scheme")?.string() ?? "HTTP"
                guard scheme == "HTTP" || scheme == "HTTPS" else {
                    throw try s.required("scheme").error("scheme must be HTTP or HTTPS")
                }
                var headers: [(String, String)] = []
                for h in try s.optional("http_headers")?.array() ?? [] {
                    let o = try h.object()
                    headers.append((try o.required("name").nonEmptyString(), try o.optional("value")?.string() ?? ""))
                    try o.finish()
                }
                action = .http(path: try s.optional("path")?.string() ?? "/", https: scheme == "HTTPS", headers: headers)
            case "grpc":
                action = .grpc(service: try s.optional("service")?.string() ?? "")
            default:
                action = .tcp
            }
            try s.finish()
            try p.finish()
            probes[path] = AppProbe(action: action, port: port, timeout: .seconds(timeout))
        }
        try obj.finish()
        return AppProbesConfig(probes: probes)
    }
}

extension AppProbesConfig: HTTPFilterConfig {
    func makeFactory(_ context: HTTPFilterBuildContext) -> any HTTPFilterFactory {
        AppProbesFilter(name: context.filterName, config: self)
    }
}
