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

    static func fileLog(_ path: String, _ format: String, filter: String? = nil) -> String {
        "{name: envoy.access_loggers.file, \(filter.map { "filter: \($0), " } ?? "")typed_config: {\"@type\": "
            + "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: \(path), "
            + "log_format: {text_format_source: {inline_string: \"\(format)\"}}}}"
    }

    static func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    static func temporaryPath(_ name: String) -> String {
        NSTemporaryDirectory() + "pilotfish-\(name)-\(UUID().uuidString).log"
    }

    /// A filter keeps only the requests it matches (here: status >= 400 or no route); the unfiltered log next to
    /// it still gets every request.
    @Test func aFilteredLogTakesOnlyTheRequestsItsFilterMatches() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let all = Self.temporaryPath("all"), errors = Self.temporaryPath("errors")
        defer { for p in [all, errors] { try? FileManager.default.removeItem(atPath: p) } }
        let format = #"%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\n"#
        let filter = "{or_filter: {filters: [{status_code_filter: {comparison: {op: GE, value: {default_value: 500}}}}, "
            + "{response_flag_filter: {flags: [NR]}}]}}"
        let proxy = try ProxyHarness(yaml: ProxyConfig.yaml(
            routes: [#"{match: {path: "/direct"}, direct_response: {status: 503}}"#,
                     #"{match: {prefix: "/s"}, route: {cluster: backend}}"#],
            clusters: [("backend", backend.port)],
            hcmExtra: ["access_log: [\(Self.fileLog(all, format)), \(Self.fileLog(errors, format, filter: filter))]"]))
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/service").status == 200)
        #expect(try proxy.fetch("GET", "/status/404").status == 404)
        #expect(try proxy.fetch("GET", "/nowhere").status == 404)
        #expect(try proxy.fetch("GET", "/direct").status == 503)
        proxy.shutdown()
        #expect(Set(Self.lines(all)) == [
            "/service 200 - via_upstream", "/status/404 404 - via_upstream", "/nowhere 404 NR route_not_found",
            "/direct 503 - direct_response",
        ])
        #expect(Set(Self.lines(errors)) == ["/nowhere 404 NR route_not_found", "/direct 503 - direct_response"])
    }

    /// tcp_proxy's access_log and the listener's: one line each per connection, when it closes, with the bytes
    /// each way, the upstream host and cluster and the connection's number.
    @Test func tcpProxyAndListenerLogsWriteOneLinePerConnection() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let tcp = Self.temporaryPath("tcp"), listener = Self.temporaryPath("listener")
        defer { for p in [tcp, listener] { try? FileManager.default.removeItem(atPath: p) } }
        let format = "%BYTES_RECEIVED% %BYTES_SENT% %UPSTREAM_HOST% %UPSTREAM_CLUSTER% %RESPONSE_CODE% %PROTOCOL% "
            + "%RESPONSE_FLAGS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %CONNECTION_ID% %UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%\\n"
        let yaml = """
            admin:
              address: {socket_address: {address: 127.0.0.1, port_value: 0}}
            static_resources:
              listeners:
              - name: tcp
                address: {socket_address: {address: 127.0.0.1, port_value: 0}}
                access_log: [\(Self.fileLog(listener, "L " + format))]
                filter_chains:
                - filters:
                  - name: envoy.filters.network.tcp_proxy
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                      stat_prefix: t
                      cluster: backend
                      access_log: [\(Self.fileLog(tcp, "T " + format))]
              clusters:
              - {name: backend, connect_timeout: 1s, type: STATIC, load_assignment: {cluster_name: backend, endpoints: \
            [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: \(backend.port)}}}}]}]}}
            """
        let proxy = try ProxyHarness(yaml: yaml)
        defer { proxy.shutdown() }
        let request = RawClient.request("GET", "/service", headers: ["connection: close"])
        var sizes: [Int] = []
        for _ in 0..<2 {
            let client = try proxy.client()
            try client.send(request)
            sizes.append(try client.readUntilEOF().count)
            client.close()
        }
        proxy.shutdown()
        let t = Self.lines(tcp), l = Self.lines(listener)
        #expect(t.count == 2 && l.count == 2, "\(t) \(l)")
        let upstream = "127.0.0.1:\(backend.port)"
        let ids = t.compactMap { $0.split(separator: " ").dropLast().last.flatMap { UInt64($0) } }
        #expect(Set(ids).count == 2, "connection ids \(t)")
        for line in t {
            #expect(line.hasPrefix("T \(request.utf8.count) "), "\(line)")
            #expect(line.contains(" \(upstream) backend 0 - - 127.0.0.1 "), "\(line)")
            #expect(line.hasSuffix(" 127.0.0.1"), "\(line)")
        }
        #expect(Set(t.map { $0.dropFirst(2) }) == Set(l.map { $0.dropFirst(2) }), "\(t) \(l)")
        #expect(Set(t.map { Int($0.split(separator: " ")[2]) ?? -1 }) == Set(sizes), "\(t) \(sizes)")
    }

    /// The listener's access_log on an HTTP listener: one line per connection (not per request), with the
    /// connection's bytes as they crossed the wire and its protocol.
    @Test func listenerLogOnAnHTTPListenerWritesOneLinePerConnection() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let path = Self.temporaryPath("http-listener")
        defer { try? FileManager.default.removeItem(atPath: path) }
        var yaml = ProxyConfig.yaml(clusters: [("backend", backend.port)])
        yaml = yaml.replacingOccurrences(
            of: "    filter_chains:\n",
            with: "    access_log: [\(Self.fileLog(path, "%BYTES_RECEIVED% %RESPONSE_CODE% %PROTOCOL% %UPSTREAM_HOST%\\n"))]\n    filter_chains:\n")
        let proxy = try ProxyHarness(yaml: yaml)
        defer { proxy.shutdown() }
        let client = try proxy.client()
        let one = RawClient.request("GET", "/a"), two = RawClient.request("GET", "/b", headers: ["connection: close"])
        try client.send(one)
        #expect(try client.readResponse().status == 200)
        try client.send(two)
        #expect(try client.readResponse().status == 200)
        _ = client.waitForClose()
        proxy.shutdown()
        #expect(Self.lines(path) == ["\(one.utf8.count + two.utf8.count) 0 HTTP/1.1 -"])
    }

    /// Admin POST /reopen_logs: after the file was moved away, lines go to a new file at the configured path.
    @Test func reopenLogsStartsANewFileAfterRotation() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let path = Self.temporaryPath("rotate"), rotated = path + ".1"
        defer { for p in [path, rotated] { try? FileManager.default.removeItem(atPath: p) } }
        let proxy = try ProxyHarness(yaml: ProxyConfig.yaml(
            clusters: [("backend", backend.port)], hcmExtra: ["access_log: [\(Self.fileLog(path, "%REQ(:PATH)%\\n"))]"]))
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/first").status == 200)
        // The line leaves the worker's buffer at its flush interval: wait for it, not for a time.
        #expect(Self.waitUntil { Self.lines(path) == ["/first"] })
        try FileManager.default.moveItem(atPath: path, toPath: rotated)
        #expect(try proxy.admin("GET", "/reopen_logs").status == 405)
        #expect(try proxy.admin("POST", "/reopen_logs").status == 200)
        #expect(Self.waitUntil { FileManager.default.fileExists(atPath: path) })
        #expect(try proxy.fetch("GET", "/second").status == 200)
        proxy.shutdown()
        #expect(Self.lines(rotated) == ["/first"])
        #expect(Self.lines(path) == ["/second"])
    }

    /// Polls `condition` (10 s at most): for things that happen on another thread at their own pace.
    static func waitUntil(_ condition: () -> Bool) -> Bool {
        for _ in 0..<1000 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }
}
