import Foundation
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// RBAC through the real proxy on loopback sockets, with the answers Envoy 1.40 gives for the same configs.
@Suite(.serialized) struct RBACIntegrationTests {
    static let rbacType = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
    static let networkRBACType = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"

    /// An HTTP listener whose connection manager (`ingress_http`) runs the given HTTP RBAC `rules` (a YAML
    /// flow mapping) before the router; `networkRules` adds a network RBAC filter (stat prefix `net`) in
    /// front of the connection manager.
    static func httpConfig(backend: Int, rules: String?, networkRules: String? = nil) -> String {
        let httpRBAC = rules.map {
            """
                      - name: envoy.filters.http.rbac
                        typed_config: {"@type": \(rbacType), rules: \($0)}
            """ + "\n"
        } ?? ""
        let networkRBAC = networkRules.map {
            """
                  - name: envoy.filters.network.rbac
                    typed_config: {"@type": \(networkRBACType), stat_prefix: net, rules: \($0)}
            """ + "\n"
        } ?? ""
        return """
            admin:
              address: {socket_address: {address: 127.0.0.1, port_value: 0}}
            static_resources:
              listeners:
              - name: web
                address: {socket_address: {address: 127.0.0.1, port_value: 0}}
                filter_chains:
                - filters:

            """ + networkRBAC + """
                  - name: envoy.filters.network.http_connection_manager
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                      stat_prefix: ingress_http
                      route_config:
                        virtual_hosts:
                        - name: all
                          domains: ["*"]
                          response_headers_to_add: [{header: {key: x-vh, value: "1"}}]
                          routes: [{match: {prefix: "/"}, route: {cluster: backend}}]
                      http_filters:

            """ + httpRBAC + """
                      - name: envoy.filters.http.router
                        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
              clusters:
              - {name: backend, connect_timeout: 1s, type: STATIC, load_assignment: {cluster_name: backend, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: \(backend)}}}}]}]}}
            """
    }

    /// GET under /public is allowed; anything else is denied.
    static let getPublicOnly = """
        {action: ALLOW, policies: {get-public: {permissions: [{and_rules: {rules: [{header: {name: ":method", string_match: {exact: GET}}}, {url_path: {path: {prefix: /public}}}]}}], principals: [{any: true}]}}}
        """

    @Test func methodAndPathRuleAnswers403WithEnvoysBodyAndKeepsTheConnection() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: Self.httpConfig(backend: backend.port, rules: Self.getPublicOnly))
        defer { proxy.shutdown() }
        #expect(try proxy.stat("http.ingress_http.rbac.allowed") == 0)
        #expect(try proxy.stat("http.ingress_http.rbac.shadow_denied") == 0)

        let client = try proxy.client()
        defer { client.close() }
        try client.send(RawClient.request("GET", "/private"))
        let denied = try client.readResponse()
        #expect(denied.status == 403)
        #expect(denied.bodyString == "RBAC: access denied")
        #expect(denied.header("content-type") == "text/plain")
        #expect(denied.header("content-length") == "19")
        #expect(denied.header("x-vh") == "1")
        #expect(denied.header("connection") == nil)
        // The same connection goes on: Envoy keeps it after a 403 to a request without a body.
        try client.send(RawClient.request("GET", "/public/index.html?x=1"))
        let allowed = try client.readResponse()
        #expect(allowed.status == 200)
        #expect(allowed.bodyString == TestBackend.helloBody)

        #expect(try proxy.fetch("POST", "/public/form").status == 403)
        let head = try proxy.fetch("HEAD", "/private")
        #expect(head.status == 403)
        #expect(head.body.isEmpty)

        #expect(try proxy.stat("http.ingress_http.rbac.allowed") == 1)
        #expect(try proxy.stat("http.ingress_http.rbac.denied") == 3)
        #expect(try proxy.stat("http.ingress_http.downstream_rq_4xx") == 3)
        #expect(backend.requestCount == 1)
        #expect(backend.lastHead?.uri == "/public/index.html?x=1")
    }

    @Test func aDeniedRequestWithABodyClosesTheConnectionAsEnvoyDoes() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: Self.httpConfig(backend: backend.port, rules: Self.getPublicOnly))
        defer { proxy.shutdown() }
        let client = try proxy.client()
        defer { client.close() }
        try client.send("POST /private HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello")
        let denied = try client.readResponse()
        #expect(denied.status == 403)
        #expect(denied.header("connection") == "close")
        #expect(client.waitForClose())
        #expect(backend.requestCount == 0)
    }

    @Test func denyActionBlocksOnlyMatchingRequests() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let rules = "{action: DENY, policies: {blocked: {permissions: [{header: {name: x-block, present_match: true}}], principals: [{any: true}]}}}"
        let proxy = try ProxyHarness(yaml: Self.httpConfig(backend: backend.port, rules: rules))
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/a", headers: ["x-block: yes"]).status == 403)
        #expect(try proxy.fetch("GET", "/a").status == 200)
        #expect(try proxy.stat("http.ingress_http.rbac.denied") == 1)
        #expect(try proxy.stat("http.ingress_http.rbac.allowed") == 1)
    }

    @Test func remoteIPFollowsXForwardedForAsInEnvoyWithoutUseRemoteAddress() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let rules = "{action: DENY, policies: {ten: {permissions: [{any: true}], principals: [{remote_ip: {address_prefix: 10.0.0.0, prefix_len: 8}}]}}}"
        let proxy = try ProxyHarness(yaml: Self.httpConfig(backend: backend.port, rules: rules))
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/a", headers: ["x-forwarded-for: 10.1.2.3"]).status == 403)
        #expect(try proxy.fetch("GET", "/a", headers: ["x-forwarded-for: 10.1.2.3, 192.168.0.1"]).status == 200)
        #expect(try proxy.fetch("GET", "/a").status == 200)
    }

    @Test func theUpstreamGetsTheRequestIDRBACSaw() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        // Envoy generates x-request-id before filters run, so a rule requiring it always matches.
        let rules = "{action: ALLOW, policies: {id: {permissions: [{header: {name: x-request-id, present_match: true}}], principals: [{any: true}]}}}"
        let proxy = try ProxyHarness(yaml: Self.httpConfig(backend: backend.port, rules: rules))
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/a").status == 200)
        #expect(backend.lastHead?.headerValues("x-request-id").count == 1)
        #expect(try proxy.fetch("GET", "/b", headers: ["x-request-id: mine"]).status == 200)
        #expect(backend.lastHead?.header("x-request-id") == "mine")
    }

    @Test func networkRBACInFrontOfTheConnectionManagerClosesUnanswered() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let deny = "{action: DENY, policies: {loopback: {permissions: [{any: true}], principals: [{source_ip: {address_prefix: 127.0.0.1, prefix_len: 32}}]}}}"
        let proxy = try ProxyHarness(yaml: Self.httpConfig(backend: backend.port, rules: nil, networkRules: deny))
        defer { proxy.shutdown() }
        let client = try BlockingSocket(port: proxy.port, timeout: 5)
        defer { client.close() }
        try client.write(Array(RawClient.request("GET", "/a").utf8))
        #expect(try client.readToEOF().isEmpty)
        #expect(try proxy.stat("net.rbac.denied") == 1)
        #expect(try proxy.stat("http.ingress_http.downstream_rq_total") == 0)
        #expect(backend.requestCount == 0)
    }

    // MARK: tcp_proxy

    static func tcpConfig(upstream: Int, rules: String, statPrefix: String = "tcp_rbac") -> String {
        """
        admin:
          address: {socket_address: {address: 127.0.0.1, port_value: 0}}
        static_resources:
          listeners:
          - name: tcp
            address: {socket_address: {address: 127.0.0.1, port_value: 0}}
            filter_chains:
            - filters:
              - name: envoy.filters.network.rbac
                typed_config: {"@type": \(networkRBACType), stat_prefix: "\(statPrefix)", rules: \(rules)}
              - name: envoy.filters.network.tcp_proxy
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                  stat_prefix: echo
                  cluster: echo
          clusters:
          - name: echo
            connect_timeout: 1s
            type: STATIC
            load_assignment: {cluster_name: echo, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: \(upstream)}}}}]}]}
        """
    }

    @Test func sourceIPDenialClosesTheConnectionBeforeAnyUpstream() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let deny = "{action: DENY, policies: {loopback: {permissions: [{any: true}], principals: [{source_ip: {address_prefix: 127.0.0.1, prefix_len: 32}}]}}}"
        let proxy = try ProxyHarness(yaml: Self.tcpConfig(upstream: echo.port, rules: deny))
        defer { proxy.shutdown() }
        // Envoy reads the client's first bytes and closes: the client sees an end of stream, not a reset
        // (BlockingSocket throws on a reset).
        let client = try BlockingSocket(port: proxy.port, timeout: 5)
        defer { client.close() }
        try client.write(Array("hello".utf8))
        #expect(try client.readToEOF().isEmpty)
        #expect(try proxy.stat("tcp_rbac.rbac.denied") == 1)
        #expect(try proxy.stat("tcp_rbac.rbac.allowed") == 0)
        #expect(try proxy.stat("tcp.echo.downstream_cx_total") == 1)
        #expect(try proxy.stat("cluster.echo.upstream_cx_total") == 0)
    }

    @Test func allowedConnectionsCarryBytesBothWays() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let allow = "{action: ALLOW, policies: {loopback: {permissions: [{destination_port_range: {start: 1, end: 65536}}], principals: [{source_ip: {address_prefix: 127.0.0.0, prefix_len: 8}}]}}}"
        let proxy = try ProxyHarness(yaml: Self.tcpConfig(upstream: echo.port, rules: allow, statPrefix: "net."))
        defer { proxy.shutdown() }
        let payload = Array("ping through rbac".utf8)
        #expect(try BlockingSocket.roundTrip(port: proxy.port, sending: payload, halfClose: true) == payload)
        #expect(try proxy.stat("net.rbac.allowed") == 1)
        #expect(try proxy.stat("net.rbac.denied") == 0)
        #expect(try proxy.stat("cluster.echo.upstream_cx_total") == 1)
    }

    @Test func allowActionWithoutAMatchingPolicyDenies() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let allowOthers = "{action: ALLOW, policies: {elsewhere: {permissions: [{any: true}], principals: [{source_ip: {address_prefix: 192.0.2.0, prefix_len: 24}}]}}}"
        let proxy = try ProxyHarness(yaml: Self.tcpConfig(upstream: echo.port, rules: allowOthers))
        defer { proxy.shutdown() }
        let client = try proxy.client()
        defer { client.close() }
        #expect(try client.readUntilEOF().isEmpty)
        #expect(try proxy.stat("tcp_rbac.rbac.denied") == 1)
    }
}
