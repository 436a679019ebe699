import NIOHTTP1
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// `*_headers_to_add` values rendered with the substitution formatter, as Envoy 1.40 applies them.
@Suite struct HeaderMutationsFormatTests {
    static func route(_ mutations: String) throws -> ForwardTarget {
        let config = try RouteConfiguration.load(text: """
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: c }
            \(mutations.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
            """)
        guard case .forward(let target) = config.route(RouteRequest(method: "GET", path: "/", authority: "a")) else {
            throw ConfigError(path: "", line: nil, message: "not forwarded")
        }
        return target
    }

    @Test func aValueThatRendersEmptyIsNotAddedUnlessKeepEmptyValue() throws {
        let target = try Self.route("""
            request_headers_to_add:
            - header: { key: x-copy, value: "%REQ(x-nope)%" }
            - header: { key: x-kept, value: "%REQ(x-nope)%" }
              keep_empty_value: true
            - header: { key: x-alt, value: "%REQ(x-nope?x-a):3%" }
            """)
        var headers = HTTPHeaders([("x-a", "hello")])
        for m in target.mutations { m.applyRequest(to: &headers, context: FormatContext()) }
        #expect(!headers.contains(name: "x-copy"))
        #expect(headers["x-kept"] == [""])
        #expect(headers["x-alt"] == ["hel"])
    }

    /// The pipelines do not re-validate outbound headers: a rendered value that would split a header is dropped.
    @Test func aRenderedValueWithALineBreakIsNeverWritten() throws {
        let target = try Self.route("""
            request_headers_to_add:
            - header: { key: x-split, value: "%START_TIME(a%nb)%" }
            - header: { key: x-ok, value: "%START_TIME(%Y)%" }
            """)
        var headers = HTTPHeaders()
        for m in target.mutations { m.applyRequest(to: &headers, context: FormatContext()) }
        #expect(!headers.contains(name: "x-split"))
        #expect(headers["x-ok"].count == 1)
    }

    @Test func requestValuesSeeTheHeadersAfterRemovalsAndBeforeTheirOwnAdditions() throws {
        let target = try Self.route("""
            request_headers_to_remove: [x-gone]
            request_headers_to_add:
            - header: { key: x-first, value: "1" }
            - header: { key: x-gone-copy, value: "[%REQ(x-gone)%]" }
            - header: { key: x-first-copy, value: "[%REQ(x-first)%]" }
            - header: { key: x-response, value: "[%RESP(x-up)%][%RESPONSE_CODE%]" }
            """)
        var headers = HTTPHeaders([("x-gone", "g")])
        for m in target.mutations { m.applyRequest(to: &headers, context: FormatContext()) }
        #expect(headers["x-gone-copy"] == ["[]"])
        #expect(headers["x-first-copy"] == ["[]"])
        #expect(headers["x-response"] == ["[][0]"])
    }

    @Test func responseValuesSeeTheRequestAndTheResponse() throws {
        let target = try Self.route("""
            response_headers_to_add:
            - header: { key: x-echo, value: "%REQ(x-a)%/%RESP(x-up)%/%RESPONSE_CODE%/%RESP(:status)%" }
            """)
        var info = StreamInfo()
        info.responseCode = 201
        let context = FormatContext(requestHeaders: HTTPHeaders([("x-a", "q")]), responseStatus: 201, stream: info)
        var headers = HTTPHeaders([("x-up", "u")])
        for m in target.mutations { m.applyResponse(to: &headers, context: context) }
        #expect(headers["x-echo"] == ["q/u/201/201"])
    }

    @Test func literalValuesNeverBuildTheContext() throws {
        let target = try Self.route("""
            request_headers_to_add: [{ header: { key: x-lit, value: "100%% literal" } }]
            response_headers_to_add: [{ header: { key: x-lit, value: "v" } }]
            """)
        var built = 0
        func context() -> FormatContext {
            built += 1
            return FormatContext()
        }
        var headers = HTTPHeaders()
        for m in target.mutations {
            m.applyRequest(to: &headers, context: context())
            m.applyResponse(to: &headers, context: context())
        }
        #expect(built == 0)
        #expect(headers["x-lit"] == ["100% literal", "v"])
        #expect(!target.mutations.contains { $0.requestReadsStream || $0.responseReadsStream })
    }

    @Test func everyRouteDecisionNamesItsRoute() throws {
        let config = try RouteConfiguration.load(text: """
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - { name: rd, match: { prefix: "/d" }, direct_response: { status: 200 } }
              - { name: rr, match: { prefix: "/r" }, redirect: { path_redirect: /x } }
              - { name: rf, match: { prefix: "/f" }, route: { cluster: c } }
              - { match: { prefix: "/" }, route: { cluster: c } }
            """)
        let names = ["/d", "/r", "/f", "/"].map {
            config.route(RouteRequest(method: "GET", path: $0, authority: "a")).routeName
        }
        #expect(names == ["rd", "rr", "rf", nil])
    }

    @Test func aTableWhoseValuesReadTheClockSaysSo() throws {
        let timed = try RouteConfiguration.load(text: """
            response_headers_to_add: [{ header: { key: x-t, value: "%START_TIME(%s)%" } }]
            virtual_hosts: [{ name: vh, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: c } }] }]
            """)
        #expect(timed.formatsReadTiming)
        let untimed = try RouteConfiguration.load(text: """
            response_headers_to_add: [{ header: { key: x-t, value: "%RESPONSE_CODE%" } }]
            virtual_hosts: [{ name: vh, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: c } }] }]
            """)
        #expect(!untimed.formatsReadTiming)
    }
}
