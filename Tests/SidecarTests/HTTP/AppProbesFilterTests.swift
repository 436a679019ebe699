import Foundation
import NIOCore
import NIOHPACK
import Testing
@testable import Sidecar
@testable import SidecarCore

/// `pilotfish.filters.http.app_probes` through the real proxy: the kubelet's rewritten probe paths are answered by
/// running the app's original probe (HTTP, TCP, gRPC health) against loopback backends.
struct AppProbesFilterTests {
    /// A port nothing listens on (bound, then released).
    static func closedPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    static func grpcBackend(serving: Bool) throws -> H2TestBackend {
        try H2TestBackend { head in
            let path = head.first { $0.0 == ":path" }?.1
            guard path == "/grpc.health.v1.Health/Check" else {
                return .init(status: 200, headers: [("content-type", "application/grpc")], trailers: [("grpc-status", "12")],
                             trailersOnly: false)
            }
            // HealthCheckResponse { status: SERVING (1) or NOT_SERVING (2) }.
            return .init(status: 200, headers: [("content-type", "application/grpc")],
                         body: [0, 0, 0, 0, 2, 0x08, serving ? 1 : 2], trailers: [("grpc-status", "0")])
        }
    }

    @Test func probesPassAndFailAsTheKubeletWouldSeeThem() throws {
        let app = try TestBackend()
        defer { app.stop() }
        let serving = try Self.grpcBackend(serving: true)
        defer { serving.stop() }
        let notServing = try Self.grpcBackend(serving: false)
        defer { notServing.stop() }
        let closed = try Self.closedPort()
        let probes = """
            {"/app-health/app/readyz": {"httpGet": {"port": \(app.port), "path": "/ready", "httpHeaders": [{"name": "X-Probe", "value": "1"}]}},
             "/app-health/app/livez": {"tcpSocket": {"port": \(app.port)}},
             "/app-health/app/startupz": {"grpc": {"port": \(serving.port), "service": "web.Health"}},
             "/app-health/bad/readyz": {"httpGet": {"port": \(app.port), "path": "/status/500"}},
             "/app-health/bad/livez": {"tcpSocket": {"port": \(closed)}, "timeoutSeconds": 2},
             "/app-health/bad/startupz": {"grpc": {"port": \(notServing.port)}}}
            """
        let filter = "{name: pilotfish.filters.http.app_probes, typed_config: {\"@type\": \(AppProbesFilter.typeURL), probes: \(probes)}}"
        let proxy = try ProxyHarness(yaml: ProxyConfig.yaml(
            routes: [#"{match: {path: /healthz/ready}, direct_response: {status: 200}}"#], clusters: [],
            httpFilters: [filter.replacingOccurrences(of: "\n", with: " ")]))
        defer { proxy.shutdown() }

        for path in ["/app-health/app/readyz", "/app-health/app/livez", "/app-health/app/startupz"] {
            let r = try proxy.fetch("GET", path)
            #expect(r.status == 200 && r.bodyString == "ok\n", Comment(rawValue: "\(path): \(r.status) \(r.bodyString)"))
        }
        // The HTTP probe reached the app as the kubelet sends it: a GET of the original path with its headers.
        let head = try #require(app.heads.last)
        #expect(head.uri == "/ready" && head.header("x-probe") == "1" && head.header("user-agent") == "kube-probe/pilotfish")
        #expect(serving.requests.withLockedValue { $0.last?.first { $0.0 == ":path" }?.1 } == "/grpc.health.v1.Health/Check")

        let http = try proxy.fetch("GET", "/app-health/bad/readyz")
        #expect(http.status == 503 && http.bodyString.contains("HTTP probe answered 500"), Comment(rawValue: http.bodyString))
        let tcp = try proxy.fetch("GET", "/app-health/bad/livez")
        #expect(tcp.status == 503 && tcp.bodyString.contains("connect to 127.0.0.1:\(closed)"), Comment(rawValue: tcp.bodyString))
        let grpc = try proxy.fetch("GET", "/app-health/bad/startupz")
        #expect(grpc.status == 503 && grpc.bodyString.contains("not SERVING"), Comment(rawValue: grpc.bodyString))
        // Other paths go on down the chain.
        #expect(try proxy.fetch("GET", "/healthz/ready").status == 200)
        #expect(try proxy.fetch("GET", "/app-health/nope/livez").status == 404)
    }

    @Test func badProbeTablesAreConfigErrors() throws {
        func load(_ probes: String) -> String {
            let yaml = ProxyConfig.yaml(routes: [], clusters: [], httpFilters: [
                "{name: pilotfish.filters.http.app_probes, typed_config: {\"@type\": \(AppProbesFilter.typeURL), probes: \(probes)}}",
            ])
            do {
                _ = try Bootstrap.load(text: yaml)
                return "loaded"
            } catch {
                return "\(error)"
            }
        }
        #expect(load(#"{"/x": {"exec": {"command": ["true"]}}}"#).contains("unknown field 'exec'"))
        #expect(load(#"{"/x": {"tcpSocket": {"port": 70000}}}"#).contains("port"))
        #expect(load(#"{"x": {"tcpSocket": {"port": 80}}}"#).contains("a probe's path must start with /"))
        #expect(load(#"{"/x": {"httpGet": {"port": 80, "scheme": "FTP"}}}"#).contains("scheme must be HTTP or HTTPS"))
        #expect(load(#"{"/x": {}}"#).contains("http_get"))
    }
}

/// `sidecar wait-ready` (a classic sidecar's postStart hook) against a real listener.
struct ReadinessWaitTests {
    @Test func readyOnceTheEndpointAnswers200AndNotBefore() throws {
        let proxy = try ProxyHarness(yaml: ProxyConfig.yaml(
            routes: [#"{match: {path: /healthz/ready}, direct_response: {status: 200}}"#,
                     #"{match: {path: /starting}, direct_response: {status: 503}}"#], clusters: []))
        defer { proxy.shutdown() }
        #expect(ReadinessWait.waitUntilReady(port: proxy.port, timeout: 2))
        #expect(!ReadinessWait.waitUntilReady(port: proxy.port, path: "/starting", timeout: 0.5, interval: 0.1))
        #expect(!ReadinessWait.waitUntilReady(port: try AppProbesFilterTests.closedPort(), timeout: 0.5, interval: 0.1))
    }
}
