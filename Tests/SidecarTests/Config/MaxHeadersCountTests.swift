import SidecarCore
import Testing

@testable import Sidecar

/// `common_http_protocol_options.max_headers_count` on the connection manager (Envoy's default 100, Host included;
/// scripts/e2e-smuggling holds the default's edge to Envoy 1.40's answers).
struct MaxHeadersCountTests {
    @Test func decodesWithEnvoysDefaultAndBound() throws {
        let plain = try Bootstrap.load(text: ProxyConfig.single(port: 1))
        guard case .httpConnectionManager(let hcm) = plain.listeners[0].filterChains[0].network else {
            Issue.record("no hcm")
            return
        }
        #expect(hcm.commonProtocolOptions.maxHeadersCount == 100)
        let set = try Bootstrap.load(text: ProxyConfig.single(
            port: 1, hcmExtra: ["common_http_protocol_options: {max_headers_count: 7}"]))
        guard case .httpConnectionManager(let seven) = set.listeners[0].filterChains[0].network else {
            Issue.record("no hcm")
            return
        }
        #expect(seven.commonProtocolOptions.maxHeadersCount == 7)
        #expect(throws: ConfigError.self) {
            try Bootstrap.load(text: ProxyConfig.single(port: 1, hcmExtra: ["common_http_protocol_options: {max_headers_count: 0}"]))
        }
    }

    @Test func aRequestWithMoreHeaderFieldsIsRefusedWith431() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(
            port: backend.port, hcmExtra: ["common_http_protocol_options: {max_headers_count: 3}"]))
        defer { proxy.shutdown() }
        let ok = try proxy.client()
        try ok.send("GET /a HTTP/1.1\r\nhost: a\r\nx-one: 1\r\nx-two: 2\r\n\r\n")
        #expect(try ok.readResponse().status == 200)
        let tooMany = try proxy.client()
        try tooMany.send("GET /a HTTP/1.1\r\nhost: a\r\nx-one: 1\r\nx-two: 2\r\nx-three: 3\r\n\r\n")
        let r = try tooMany.readResponse()
        #expect(r.status == 431)
        #expect(r.header("connection") == "close")
        #expect(backend.requestCount == 1)
    }
}
