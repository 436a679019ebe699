import Foundation
import Testing
@testable import Sidecar
@testable import SidecarCore

/// Admin endpoints that change state are POST only: Envoy 1.40 answers a GET with 405 and does nothing.
struct AdminMutatingMethodTests {
    /// The mutating endpoints Pilotfish serves, written out so that one dropped from `AdminServer.mutating` (and so
    /// served on GET) fails here too.
    static let expected: Set<String> = [
        "/quitquitquit", "/healthcheck/fail", "/healthcheck/ok", "/reset_counters", "/drain_listeners", "/logging",
        "/runtime_modify", "/reopen_logs",
    ]

    @Test func everyMutatingEndpointAnswersGETWith405AndChangesNothing() throws {
        #expect(AdminServer.mutating == Self.expected)
        let proxy = try ProxyHarness(yaml: ProxyConfig.yaml(
            routes: [#"{match: {prefix: "/"}, direct_response: {status: 200}}"#], clusters: []))
        defer { proxy.shutdown() }
        #expect(try proxy.fetch("GET", "/").status == 200)
        for path in Self.expected.sorted() {
            let response = try proxy.admin("GET", path + (path == "/logging" ? "?level=trace" : ""))
            #expect(response.status == 405, "GET \(path)")
            #expect(response.bodyString == "Method GET not allowed, POST required.", "GET \(path)")
        }
        // Nothing happened: still live and serving, not draining, health check not failed, counters kept.
        #expect(try proxy.admin("GET", "/ready").status == 200)
        #expect(try proxy.fetch("GET", "/").status == 200)
        #expect(try proxy.stat("http.\(ProxyConfig.statPrefix).downstream_rq_total") == 2)
        #expect(!proxy.server.isDraining)
        #expect(Log.level != .trace)
    }
}
