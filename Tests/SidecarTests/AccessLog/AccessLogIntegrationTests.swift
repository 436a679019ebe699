import Foundation
import Testing

@testable import Sidecar
@testable import SidecarCore

/// Access logs through the running proxy on loopback: one line per request, flushed by shutdown.
@Suite struct AccessLogIntegrationTests {
    @Test func everyRequestIsLoggedOnceWithItsStatusMethodPathAndBytes() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let path = NSTemporaryDirectory() + "pilotfish-access-\(UUID().uuidString).log"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let format = #"%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %BYTES_RECEIVED% %BYTES_SENT% %UPSTREAM_HOST%\n"#
        let proxy = try ProxyHarness(yaml: ProxyConfig.yaml(
            routes: [#"{match: {path: "/direct"}, direct_response: {status: 418, body: {inline_string: "tea"}}}"#,
                     ProxyConfig.catchAll],
            clusters: [("backend", backend.port)],
            hcmExtra: ["access_log: [{name: envoy.access_loggers.file, typed_config: {\"@type\": "
                + "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: \(path), "
                + "log_format: {text_format_source: {inline_string: \"\(format)\"}}}}]"]))
        defer { proxy.shutdown() }

        #expect(try proxy.fetch("GET", "/service").status == 200)
        #expect(try proxy.fetch("GET", "/status/404").status == 404)
        #expect(try proxy.fetch("GET", "/direct").status == 418)
        let client = try proxy.client()
        try client.send(RawClient.request("POST", "/echo", headers: ["content-length: 4"]) + "ping")
        #expect(try client.readResponse().status == 200)
        proxy.shutdown()

        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map(String.init)
        let upstream = "127.0.0.1:\(backend.port)"
        #expect(lines.count == 4, "\(lines)")
        #expect(lines.contains("GET /service 200 0 19 \(upstream)"), "\(lines)")
        #expect(lines.contains("GET /status/404 404 0 10 \(upstream)"), "\(lines)")
        #expect(lines.contains("GET /direct 418 0 3 -"), "\(lines)")
        #expect(lines.contains("POST /echo 200 4 4 \(upstream)"), "\(lines)")
    }
}
