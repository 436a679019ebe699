import Foundation
import NIOCore
import Testing
@testable import Sidecar
@testable import SidecarCore

/// The connection manager's `request_headers_timeout` (slowloris) on real sockets: a client that sends part of its
/// headers and stops gets Envoy 1.40's 408 `request header timeout` and the connection closes; a client that sends
/// nothing, or whose headers are complete, is not its business.
struct RequestHeadersTimeoutTests {
    static func proxy() throws -> ProxyHarness {
        try ProxyHarness(yaml: ProxyConfig.yaml(
            routes: [#"{match: {prefix: "/"}, direct_response: {status: 200, body: {inline_string: ok}}}"#],
            clusters: [], hcmExtra: ["request_headers_timeout: 0.3s"]))
    }

    @Test func partialHeadersGet408AndTheConnectionCloses() throws {
        let proxy = try Self.proxy()
        defer { proxy.shutdown() }
        let c = try proxy.client()
        try c.send("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        let start = Date()
        let r = try c.readResponse()
        #expect(r.status == 408 && r.bodyString == "request header timeout")
        #expect(r.headers.contains { $0.name.lowercased() == "connection" && $0.value == "close" })
        #expect(Date().timeIntervalSince(start) >= 0.25)
        #expect(try c.readUntilEOF().isEmpty)
        #expect(try proxy.stat("http.\(ProxyConfig.statPrefix).downstream_rq_header_timeout") == 1)
    }

    @Test func aSlowlorisThatKeepsSendingIsStillCutOff() throws {
        let proxy = try Self.proxy()
        defer { proxy.shutdown() }
        let c = try proxy.client()
        // One header byte every 100 ms for over a second: each read brings bytes, none completes the headers. The
        // timer runs from the first of them, so the 408 comes at 0.3 s, not 0.3 s after the last byte.
        try c.send("GET / HTTP/1.1\r\nHost: x\r\n")
        for byte in Array("X-A: aaaaaaaaaaaa".utf8) {
            do { try c.send([byte]) } catch { break }  // the proxy closed the connection
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(try c.readResponse().status == 408)
    }

    @Test func completeHeadersAndSilentConnectionsAreNotCut() throws {
        let proxy = try Self.proxy()
        defer { proxy.shutdown() }
        // Headers complete, then a keep-alive pause longer than the timeout, then the next request.
        let c = try proxy.client()
        try c.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try c.readResponse().status == 200)
        Thread.sleep(forTimeInterval: 0.6)
        try c.send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(try c.readResponse().status == 200)
        // The next request's headers in two parts, the second within the timeout.
        try c.send("GET /c HTTP/1.1\r\nHo")
        Thread.sleep(forTimeInterval: 0.1)
        try c.send("st: x\r\n\r\n")
        #expect(try c.readResponse().status == 200)
        // ... and then part of one more, left hanging: 408 on this kept-alive connection too.
        try c.send("GET /d HTTP/1.1\r\n")
        #expect(try c.readResponse().status == 408)
        // A connection that never sends a byte is the idle timeout's, not this one's.
        let silent = try proxy.client(timeout: 0.7)
        #expect(throws: (any Error).self) { _ = try silent.readExactly(1) }
        #expect(try proxy.stat("http.\(ProxyConfig.statPrefix).downstream_rq_header_timeout") == 1)
    }
}

/// The limits' config fields as they decode.
struct DownstreamLimitsConfigTests {
    static func load(hcm: [String] = [], listener: String = "") throws -> Listener {
        var yaml = ProxyConfig.yaml(routes: [], clusters: [], hcmExtra: hcm)
        if !listener.isEmpty {
            yaml = yaml.replacingOccurrences(of: "  - name: listener_0\n", with: "  - name: listener_0\n    \(listener)\n")
        }
        return try Bootstrap.load(text: yaml).listeners[0]
    }

    @Test func requestHeadersTimeoutAndBacklog() throws {
        #expect(try Self.load(hcm: ["request_headers_timeout: 2.5s"]).connectionManager?
            .requestHeadersTimeout == .milliseconds(2500))
        // Zero disables it, as in Envoy; so does leaving it out.
        #expect(try Self.load(hcm: ["request_headers_timeout: 0s"]).connectionManager?
            .requestHeadersTimeout == nil)
        #expect(try Self.load(listener: "tcp_backlog_size: 64").tcpBacklogSize == 64)
        #expect(try Self.load().tcpBacklogSize == nil)
        #expect(throws: ConfigError.self) { try Self.load(listener: "tcp_backlog_size: 0") }
    }
}
