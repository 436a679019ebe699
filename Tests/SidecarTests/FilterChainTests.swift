import Foundation
import NIOCore
import Testing
@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

@Suite struct HTTPInspectorTests {
    @Test(arguments: [
        ("GET / HTTP/1.1\r\n", "http/1.1"), ("POST /x?y HTTP/1.0\r\nHost: a\r\n", "http/1.0"),
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "h2c"), ("M-SEARCH * HTTP/1.1\r\n", "http/1.1"),
    ])
    func detectsHTTP(text: String, proto: String) {
        #expect(HTTPInspector.inspect(Array(text.utf8)) == .protocolName(proto))
    }

    @Test(arguments: ["GE", "GET /", "GET / HTTP/1.", "PRI * HT", "GET / HTTP/1.1"])
    func waitsForMoreWhenItCouldStillBeHTTP(text: String) {
        #expect(HTTPInspector.inspect(Array(text.utf8)) == .needMore)
    }

    @Test(arguments: ["\u{16}\u{03}\u{01}", "SSH-2.0-OpenSSH\r\n", "GET  / HTTP/1.1\r\n", "GET / HTTP/2.0\r\n", "hello world\n"])
    func rejectsOtherProtocolsEarly(text: String) {
        #expect(HTTPInspector.inspect(Array(text.utf8)) == .notHTTP)
    }
}

@Suite struct FilterChainSelectorTests {
    func match(port: Int? = nil, prefixes: [String] = [], app: [String] = [], sources: [String] = []) -> FilterChainMatch {
        var m = FilterChainMatch()
        m.destinationPort = port
        m.prefixRanges = prefixes.map { p in
            let parts = p.split(separator: "/")
            return CIDRRange(address: String(parts[0]), prefixLength: parts.count > 1 ? Int(parts[1]) : nil)!
        }
        m.applicationProtocols = app
        m.sourcePrefixRanges = sources.map { CIDRRange(address: $0, prefixLength: nil)! }
        return m
    }

    func conn(_ dst: String, _ port: Int, app: [String] = [], src: String = "198.18.0.9") -> FilterChainSelector.Connection {
        FilterChainSelector.Connection(
            destination: try! SocketAddress(ipAddress: dst, port: port), source: try! SocketAddress(ipAddress: src, port: 40000),
            applicationProtocols: app)
    }

    @Test func exactDestinationPortBeatsTheWildcard() {
        let s = FilterChainSelector(chains: [match(), match(port: 8080)], hasDefault: false)
        #expect(s.select(conn("198.18.0.2", 8080)) == 1)
        #expect(s.select(conn("198.18.0.2", 9090)) == 0)
    }

    @Test func longestDestinationPrefixWins() {
        let s = FilterChainSelector(chains: [match(prefixes: ["198.18.0.0/15"]), match(prefixes: ["198.18.3.0/24"]), match()], hasDefault: false)
        #expect(s.select(conn("198.18.3.7", 80)) == 1)
        #expect(s.select(conn("198.19.0.1", 80)) == 0)
        #expect(s.select(conn("127.0.0.1", 80)) == 2)
    }

    @Test func portIsDecidedBeforeApplicationProtocol() {
        // Envoy: a chain for the exact port wins even if only another chain matches the protocol.
        let s = FilterChainSelector(chains: [match(app: ["http/1.1"]), match(port: 3306)], hasDefault: false)
        #expect(s.select(conn("198.18.0.2", 3306, app: ["http/1.1"])) == 1)
        #expect(s.select(conn("198.18.0.2", 80, app: ["http/1.1"])) == 0)
        #expect(s.select(conn("198.18.0.2", 80)) == nil)
    }

    @Test func noMatchFallsBackToTheDefaultChain() {
        let s = FilterChainSelector(chains: [match(app: ["http/1.1", "http/1.0"])], hasDefault: true)
        #expect(s.select(conn("198.18.0.2", 80, app: ["http/1.0"])) == 0)
        #expect(s.select(conn("198.18.0.2", 80)) == 1)
    }

    @Test func sourcePrefixIsTheLastTieBreaker() {
        let s = FilterChainSelector(chains: [match(sources: ["198.18.0.9"]), match()], hasDefault: false)
        #expect(s.select(conn("198.18.0.2", 80)) == 0)
        #expect(s.select(conn("198.18.0.2", 80, src: "198.18.0.10")) == 1)
    }
}

/// One listener, two chains: HTTP (by http_inspector) to an HTTP backend, anything else to an echo server.
@Suite(.serialized) struct FilterChainIntegrationTests {
    static func config(httpPort: Int, echoPort: Int) -> String {
        """
        admin:
          address: {socket_address: {address: 127.0.0.1, port_value: 0}}
        static_resources:
          listeners:
          - name: sniffing
            address: {socket_address: {address: 127.0.0.1, port_value: 0}}
            listener_filters:
            - name: envoy.filters.listener.http_inspector
              typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector}
            listener_filters_timeout: 0.3s
            continue_on_listener_filters_timeout: true
            filter_chains:
            - filter_chain_match: {application_protocols: ["http/1.1", "http/1.0"]}
              filters:
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                  stat_prefix: sniffed_http
                  route_config: {virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: web}}]}]}
                  http_filters: [{name: envoy.filters.http.router}]
            default_filter_chain:
              filters:
              - name: envoy.filters.network.tcp_proxy
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                  stat_prefix: sniffed_tcp
                  cluster: echo
          clusters:
          - {name: web, connect_timeout: 1s, type: STATIC, load_assignment: {cluster_name: web, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: \(httpPort)}}}}]}]}}
          - {name: echo, connect_timeout: 1s, type: STATIC, load_assignment: {cluster_name: echo, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: \(echoPort)}}}}]}]}}
        """
    }

    @Test func httpGoesToTheHTTPChainAndOtherBytesToTheTCPChain() throws {
        let web = try TestBackend()
        defer { web.stop() }
        let echo = try EchoServer()
        defer { echo.stop() }
        let proxy = try ProxyHarness(yaml: Self.config(httpPort: web.port, echoPort: echo.port))
        defer { proxy.shutdown() }

        let response = try proxy.fetch("GET", "/hello")
        #expect(response.status == 200)
        #expect(web.lastHead?.uri == "/hello")
        #expect(web.lastHead?.header("x-request-id") != nil)

        let payload = Array("\u{16}\u{03}\u{01} not http at all".utf8) + (0..<100_000).map { UInt8(truncatingIfNeeded: $0) }
        #expect(try BlockingSocket.roundTrip(port: proxy.port, sending: payload, halfClose: true) == payload)

        #expect(try proxy.stat("http.sniffed_http.downstream_rq_total") == 1)
        #expect(try proxy.stat("tcp.sniffed_tcp.downstream_cx_total") == 1)
        #expect(try proxy.stat("listener.127.0.0.1_0.downstream_cx_total") == 2)
    }

    @Test func serverFirstProtocolContinuesAfterTheInspectorTimeout() throws {
        let web = try TestBackend()
        defer { web.stop() }
        let echo = try EchoServer()
        defer { echo.stop() }
        let proxy = try ProxyHarness(yaml: Self.config(httpPort: web.port, echoPort: echo.port))
        defer { proxy.shutdown() }
        // The client sends nothing at first: after listener_filters_timeout the connection goes on
        // (continue_on_listener_filters_timeout) to the default chain.
        let s = try BlockingSocket(port: proxy.port, timeout: 5)
        defer { s.close() }
        Thread.sleep(forTimeInterval: 0.5)
        try s.write(Array("late".utf8))
        shutdown(s.fd, Int32(SHUT_WR))
        #expect(try s.readToEOF() == Array("late".utf8))
    }
}
