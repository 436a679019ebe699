import MeshCapture

/// The app's probes, moved to the sidecar's health port: the kubelet asks the sidecar
/// (`GET /app-health/<container>/livez|readyz|startupz` on 15021), and the sidecar runs the original probe against
/// the app on loopback. So probes keep working under STRICT mTLS (the kubelet has no mesh identity), and a TCP
/// probe sees the app's port rather than the capture rules, which accept every connection.
///
/// HTTP, TCP and gRPC probes are rewritten; exec probes run in the app's container and stay. A probe that names
/// another `host` stays too: the sidecar only probes its own pod.
public enum ProbeRewrite {
    public static let pathPrefix = "/app-health/"
    /// The sidecar's environment variable with the original probes: a JSON object from each rewritten path to
    /// the probe's action (`httpGet`, `tcpSocket` or `grpc`, with the port a number) and its `timeoutSeconds`.
    public static let environmentVariable = "PILOTFISH_APP_PROBES"

    static let kinds: [(field: String, path: String)] = [
        ("livenessProbe", "livez"), ("readinessProbe", "readyz"), ("startupProbe", "startupz"),
    ]

    /// Rewrites the probes of `container` (at `path`, for errors) and returns the originals by rewritten path.
    static func rewrite(_ container: inout KubeObject, at path: String) throws -> [(String, KubeValue)] {
        guard let name = container["name"]?.string else { return [] }
        var originals: [(String, KubeValue)] = []
        for (field, suffix) in kinds {
            guard var probe = container[field]?.object else { continue }
            let probePath = "\(path).\(field)"
            guard let (action, original) = try resolve(probe, in: container, at: probePath) else { continue }
            let healthPath = "\(pathPrefix)\(name)/\(suffix)"
            var record = KubeObject([(action, .object(original))])
            if let t = probe["timeoutSeconds"] { record["timeoutSeconds"] = t }
            originals.append((healthPath, .object(record)))
            probe[action] = nil
            var get = KubeObject([("path", .string(healthPath)), ("port", .int(Int(CaptureDefaults.readinessPort)))])
            get["scheme"] = .string("HTTP")
            // The probe's other fields (delays, periods, thresholds) stay where they were; the action goes first.
            probe = KubeObject([("httpGet", .object(get))] + probe.pairs.map { ($0.key, $0.value) })
            container[field] = .object(probe)
        }
        return originals
    }

    /// The probe's action and what the sidecar needs to run it, with a named port resolved against the container's
    /// ports; nil for a probe that stays as it is (exec, another host).
    private static func resolve(_ probe: KubeObject, in container: KubeObject, at path: String) throws
        -> (String, KubeObject)? {
        for action in ["httpGet", "tcpSocket", "grpc"] {
            guard let spec = probe[action]?.object else { continue }
            if let host = spec["host"]?.string, !host.isEmpty { return nil }
            var out = KubeObject()
            guard let portValue = spec["port"] else {
                throw ManifestError("\(path).\(action).port: missing")
            }
            out["port"] = .int(try port(portValue, in: container, at: "\(path).\(action).port"))
            switch action {
            case "httpGet":
                out["path"] = .string(spec["path"]?.string ?? "/")
                out["scheme"] = .string(spec["scheme"]?.string ?? "HTTP")
                if let headers = spec["httpHeaders"] { out["httpHeaders"] = headers }
            case "grpc":
                if let service = spec["service"] { out["service"] = service }
            default:
                break
            }
            return (action, out)
        }
        return nil
    }

    /// A probe port: a number, or the name of one of the container's ports.
    private static func port(_ value: KubeValue, in container: KubeObject, at path: String) throws -> Int {
        if let n = value.int ?? value.string.flatMap({ Int($0) }) {
            guard (1...65535).contains(n) else { throw ManifestError("\(path): \(n) is not a port") }
            return n
        }
        guard let name = value.string else { throw ManifestError("\(path): not a port number or name") }
        for p in container["ports"]?.array ?? [] {
            if let o = p.object, o["name"]?.string == name, let n = o["containerPort"]?.int { return n }
        }
        throw ManifestError("\(path): the container has no port named '\(name)'")
    }
}
