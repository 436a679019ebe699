import Foundation
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// `envoy.filters.http.fault` through a real proxy on loopback.
@Suite(.serialized) struct FaultFilterTests {
    static let type = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"

    static func filter(_ body: String) -> String {
        #"{name: envoy.filters.http.fault, typed_config: {"@type": \#(type), \#(body)}}"#
    }

    static func proxy(_ backend: TestBackend, _ filterBody: String, routes: [String] = [ProxyConfig.catchAll])
        throws -> ProxyHarness
    {
        try ProxyHarness(yaml: ProxyConfig.yaml(routes: routes, clusters: [("backend", backend.port)],
                                                httpFilters: [filter(filterBody)]))
    }

    @Test func abortAnswersLocallyWithTheConfiguredStatus() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, "abort: {http_status: 418, percentage: {numerator: 100}}")
        defer { proxy.shutdown() }
        let r = try proxy.fetch("GET", "/x")
        #expect(r.status == 418)
        #expect(r.bodyString == "fault filter abort")
        #expect(backend.requestCount == 0)
        #expect(try proxy.stat("http.ingress_http.fault.aborts_injected") == 1)
        #expect(try proxy.stat("http.ingress_http.downstream_rq_4xx") == 1)
    }

    @Test func fixedDelayHoldsTheRequestThenForwardsIt() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, "delay: {fixed_delay: 0.3s, percentage: {numerator: 100}}")
        defer { proxy.shutdown() }
        let start = Date()
        let c = try proxy.client()
        try c.send(RawClient.request("POST", "/x", headers: ["content-length: 5"]) + "hello")
        let r = try c.readResponse()
        let elapsed = Date().timeIntervalSince(start)
        #expect(r.status == 200)
        #expect(elapsed >= 0.28)
        #expect(backend.requestCount == 1)
        #expect(try proxy.stat("http.ingress_http.fault.delays_injected") == 1)
        #expect(try proxy.stat("http.ingress_http.fault.active_faults") == 0)
    }

    @Test func headerFaultsFollowTheRequestHeaders() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(
            backend, "abort: {header_abort: {}, percentage: {numerator: 100}}, "
                + "delay: {header_delay: {}, percentage: {numerator: 100}}")
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/x").status == 200)
        #expect(try proxy.fetch("GET", "/x", headers: ["x-envoy-fault-abort-request: 503"]).status == 503)
        // The request's percentage can only lower the configured one.
        #expect(try proxy.fetch("GET", "/x", headers: ["x-envoy-fault-abort-request: 503",
                                                       "x-envoy-fault-abort-request-percentage: 0"]).status == 200)
        let start = Date()
        #expect(try proxy.fetch("GET", "/x", headers: ["x-envoy-fault-delay-request: 200"]).status == 200)
        #expect(Date().timeIntervalSince(start) >= 0.18)
        #expect(try proxy.stat("http.ingress_http.fault.aborts_injected") == 1)
        #expect(try proxy.stat("http.ingress_http.fault.delays_injected") == 1)
    }

    @Test func maxActiveFaultsLetsTheOverflowThroughUntouched() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, "delay: {fixed_delay: 1s, percentage: {numerator: 100}}, max_active_faults: 1")
        defer { proxy.shutdown() }
        let held = try proxy.client()
        try held.send(RawClient.request("GET", "/held"))
        Thread.sleep(forTimeInterval: 0.2)
        #expect(try proxy.stat("http.ingress_http.fault.active_faults") == 1)
        let start = Date()
        #expect(try proxy.fetch("GET", "/quick").status == 200)
        #expect(Date().timeIntervalSince(start) < 0.9)
        #expect(try proxy.stat("http.ingress_http.fault.faults_overflow") == 1)
        #expect(try held.readResponse().status == 200)
    }

    @Test func aRouteCanReplaceOrDisableTheFault() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let routes = [
            #"{match: {prefix: "/off"}, route: {cluster: backend}, typed_per_filter_config: {envoy.filters.http.fault: {"@type": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}}}"#,
            #"{match: {prefix: "/teapot"}, route: {cluster: backend}, typed_per_filter_config: {envoy.filters.http.fault: {"@type": \#(Self.type), abort: {http_status: 418, percentage: {numerator: 100}}}}}"#,
            ProxyConfig.catchAll,
        ]
        let proxy = try Self.proxy(backend, "abort: {http_status: 503, percentage: {numerator: 100}}", routes: routes)
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/other").status == 503)
        #expect(try proxy.fetch("GET", "/off").status == 200)
        #expect(try proxy.fetch("GET", "/teapot").status == 418)
    }

    @Test func aClientLeavingDuringADelayFreesTheFault() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try Self.proxy(backend, "delay: {fixed_delay: 0.5s, percentage: {numerator: 100}}")
        defer { proxy.shutdown() }
        let c = try proxy.client()
        try c.send(RawClient.request("GET", "/x"))
        Thread.sleep(forTimeInterval: 0.1)
        #expect(try proxy.stat("http.ingress_http.fault.active_faults") == 1)
        c.close()
        Thread.sleep(forTimeInterval: 0.7)
        #expect(try proxy.stat("http.ingress_http.fault.active_faults") == 0)
        #expect(backend.requestCount == 0)
    }

    @Test func badFaultConfigIsRefusedNamingTheField() throws {
        let yaml = ProxyConfig.yaml(clusters: [("backend", 1)],
                                    httpFilters: [Self.filter("abort: {http_status: 700}")])
        #expect(throws: ConfigError.self) { try Bootstrap.load(text: yaml) }
        do {
            _ = try Bootstrap.load(text: ProxyConfig.yaml(
                clusters: [("backend", 1)], httpFilters: [Self.filter("response_rate_limit: {fixed_limit: {limit_kbps: 1}}")]))
            Issue.record("response_rate_limit was accepted")
        } catch let e as ConfigError {
            #expect(e.message.contains("response_rate_limit"))
            #expect(e.message.contains("not supported by Pilotfish yet"))
        }
    }
}
