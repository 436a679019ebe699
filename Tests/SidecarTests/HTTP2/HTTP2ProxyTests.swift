import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOHTTP2
import Testing
@testable import Sidecar
@testable import SidecarCore

/// HTTP/2 through the real proxy on real sockets: h2c downstream (codec AUTO and HTTP2), HTTP/2 upstream with
/// shared connections, trailers and trailers-only responses, GOAWAY on drain, and HTTP/1.1 upgrades (WebSocket).
@Suite(.serialized) struct HTTP2ProxyTests {
    /// A proxy whose cluster `backend` speaks HTTP/2 (`clusterOptions`: its Http2ProtocolOptions as a flow mapping).
    static func h2Cluster(port: Int, clusterOptions: String = "{}", hcmExtra: [String] = [],
                          routes: [String] = [ProxyConfig.catchAll], httpFilters: [String] = []) -> String {
        var yaml = ProxyConfig.yaml(routes: routes, clusters: [("backend", port)], hcmExtra: hcmExtra,
                                    httpFilters: httpFilters)
        yaml = yaml.replacingOccurrences(of: "type: STATIC, lb_policy: ROUND_ROBIN, ", with: """
            type: STATIC, lb_policy: ROUND_ROBIN, typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {"@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: {http2_protocol_options: \(clusterOptions)}}}, 
            """)
        return yaml
    }

    // MARK: Downstream

    @Test func h2cStreamsAreProxiedConcurrentlyToAnHTTP1Upstream() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }
        let client = try H2TestClient(port: proxy.port)
        defer { client.close() }
        let gets = (0..<5).map { i in client.request("GET", "/service?\(i)") }
        let post = client.request("POST", "/echo", body: Array(repeating: UInt8(ascii: "x"), count: 100_000))
        for r in try gets.map({ try $0.wait() }) {
            #expect(r.status == 200)
            #expect(r.body == TestBackend.helloBody)
            #expect(r.header("server") == "envoy")
            // HTTP/1 framing does not cross into HTTP/2.
            #expect(r.header("transfer-encoding") == nil && r.header("connection") == nil)
        }
        let echoed = try post.wait()
        #expect(echoed.status == 200)
        #expect(echoed.data.count == 100_000)
        #expect(try proxy.stat("http.ingress_http.downstream_cx_http2_total") == 1)
        #expect(try proxy.stat("http.ingress_http.downstream_cx_http1_total") == 0)
        #expect(try proxy.stat("http.ingress_http.downstream_rq_http2_total") == 6)
        #expect(try proxy.stat("http.ingress_http.downstream_rq_2xx") == 6)
    }

    @Test func anAutoListenerStillServesHTTP1AndIgnoresUpgradeToH2c() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }
        let c = try proxy.client()
        try c.send("GET /service HTTP/1.1\r\nhost: example.com\r\nconnection: Upgrade, HTTP2-Settings\r\n"
                   + "upgrade: h2c\r\nhttp2-settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
        let r = try c.readResponse()
        #expect(r.status == 200)
        #expect(r.bodyString == TestBackend.helloBody)
        // The upgrade headers did not reach the upstream; the connection ends after the answer (NIO's parser reads
        // nothing behind an upgrade request; Envoy would keep it).
        #expect(backend.lastHead?.header("upgrade") == nil)
        #expect(r.header("connection") == "close")
        #expect(c.waitForClose())
        #expect(try proxy.stat("http.ingress_http.downstream_cx_http1_total") == 1)
    }

    @Test func codecHTTP2RefusesHTTP1() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port)
            .replacingOccurrences(of: "codec_type: AUTO", with: "codec_type: HTTP2"))
        defer { proxy.shutdown() }
        let c = try proxy.client(timeout: 2)
        try c.send(RawClient.request("GET", "/service"))
        #expect((try? c.readResponse()) == nil)
        let h2 = try H2TestClient(port: proxy.port)
        defer { h2.close() }
        #expect(try h2.get("/service").status == 200)
    }

    @Test func drainSendsGoAwayAndFinishesTheStreamInFlight() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port), drainTime: .seconds(4))
        defer { proxy.shutdown() }
        let client = try H2TestClient(port: proxy.port)
        defer { client.close() }
        let slow = client.request("GET", "/slow?ms=600")
        #expect(eventually { backend.requestCount == 1 })
        proxy.server.drainAndStop()
        #expect(eventually { client.goAway != nil })
        #expect(client.goAway?.code == .noError)
        #expect(client.goAway?.lastStreamID == 1)
        let r = try slow.wait()
        #expect(r.status == 200)
        #expect(eventually(timeout: 3) { client.isClosed })
    }

    @Test func maxRequestsPerConnectionEndsAnHTTP2ConnectionWithGoAway() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(
            port: backend.port, hcmExtra: ["common_http_protocol_options: {max_requests_per_connection: 2}"]))
        defer { proxy.shutdown() }
        let client = try H2TestClient(port: proxy.port)
        defer { client.close() }
        #expect(try client.get("/1").status == 200)
        #expect(client.goAway == nil)
        #expect(try client.get("/2").status == 200)
        #expect(eventually { client.goAway != nil })
        #expect(client.goAway?.lastStreamID == 3)
        #expect(eventually(timeout: 3) { client.isClosed })
    }

    /// The streams' route timeouts and stream-idle ticks run on their connection's timer hub: each stream's own,
    /// with the streams around it unaffected.
    @Test func routeAndStreamIdleTimeoutsOfConcurrentStreams() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let routes = [
            #"{match: {prefix: "/", headers: [{name: x-case, string_match: {exact: route}}]}, route: {cluster: backend, timeout: 0.3s}}"#,
            #"{match: {prefix: "/", headers: [{name: x-case, string_match: {exact: idle}}]}, route: {cluster: backend, timeout: 0s, idle_timeout: 0.4s}}"#,
            ProxyConfig.catchAll,
        ]
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port, routes: routes))
        defer { proxy.shutdown() }
        let client = try H2TestClient(port: proxy.port)
        defer { client.close() }
        let timedOut = client.request("GET", "/slow?ms=3000", headers: [("x-case", "route")])
        let idle = client.request("GET", "/slow?ms=3000", headers: [("x-case", "idle")])
        let quick = (0..<5).map { _ in client.request("GET", "/slow?ms=100") }
        let served = client.request("GET", "/slow?ms=900")
        for q in quick { #expect(try q.wait().status == 200) }
        let t = try timedOut.wait()
        #expect(t.status == 504)
        #expect(t.header("x-envoy-upstream-service-time") == nil)
        let i = try idle.wait()
        #expect(i.status == 504)
        #expect(String(decoding: i.data, as: UTF8.self) == "stream timeout")
        // A stream longer than the others' timeouts, on the same connection, is not cut by them.
        #expect(try served.wait().status == 200)
        #expect(try proxy.stat("http.\(ProxyConfig.statPrefix).downstream_rq_timeout") == 1)
        #expect(try proxy.stat("http.\(ProxyConfig.statPrefix).downstream_rq_idle_timeout") == 1)
    }

    @Test func anHTTP2ConnectionWithNoStreamForIdleTimeoutGoesAway() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(
            port: backend.port, hcmExtra: ["common_http_protocol_options: {idle_timeout: 0.3s}"]))
        defer { proxy.shutdown() }
        let client = try H2TestClient(port: proxy.port)
        defer { client.close() }
        // A stream in flight longer than the timeout keeps the connection: only a connection without streams idles.
        #expect(try client.get("/slow?ms=700").status == 200)
        #expect(client.goAway == nil)
        #expect(eventually(timeout: 4) { client.goAway != nil })
        #expect(client.goAway?.code == .noError)
        #expect(client.goAway?.lastStreamID == 1)
        #expect(eventually(timeout: 3) { client.isClosed })
        #expect(try proxy.stat("http.\(ProxyConfig.statPrefix).downstream_cx_idle_timeout") == 1)
    }

    @Test func anHTTP2ConnectionOlderThanMaxConnectionDurationGoesAwayAfterItsStream() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(
            port: backend.port, hcmExtra: ["common_http_protocol_options: {max_connection_duration: 0.3s}"]))
        defer { proxy.shutdown() }
        let client = try H2TestClient(port: proxy.port)
        defer { client.close() }
        let slow = client.request("GET", "/slow?ms=800")
        // The stream in flight when the connection got too old still finishes; then GOAWAY names it.
        #expect(try slow.wait().status == 200)
        #expect(eventually(timeout: 4) { client.goAway != nil })
        #expect(client.goAway?.code == .noError)
        #expect(client.goAway?.lastStreamID == 1)
        #expect(eventually(timeout: 3) { client.isClosed })
        #expect(try proxy.stat("http.\(ProxyConfig.statPrefix).downstream_cx_max_duration_reached") == 1)
    }

    @Test func networkRBACRefusesAnHTTP2ConnectionBeforeAnyStream() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let rbac = "      - {name: envoy.filters.network.rbac, typed_config: {\"@type\": "
            + "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC, stat_prefix: h2net., rules: {action: "
            + "DENY, policies: {loopback: {permissions: [{any: true}], principals: [{remote_ip: {address_prefix: "
            + "127.0.0.1, prefix_len: 32}}]}}}}}\n"
        let yaml = ProxyConfig.single(port: backend.port).replacingOccurrences(of: "- filters:\n", with: "- filters:\n" + rbac)
        let proxy = try ProxyHarness(yaml: yaml)
        defer { proxy.shutdown() }
        let client = try H2TestClient(port: proxy.port)
        defer { client.close() }
        // The stream goes with the connection, unanswered.
        let r = try? client.get("/")
        #expect(r?.status == nil)
        #expect(eventually(timeout: 3) { client.isClosed })
        #expect(backend.requestCount == 0)
        #expect(try proxy.stat("h2net.rbac.denied") == 1)
    }

    // MARK: Upstream

    @Test func http2UpstreamStreamsShareOneConnectionAndCarryTrailers() throws {
        let backend = try H2TestBackend { _ in
            .init(headers: [("content-type", "application/grpc")], body: [0, 0, 0, 0, 2, 8, 1],
                  trailers: [("grpc-status", "0"), ("grpc-message", "fine")])
        }
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: Self.h2Cluster(port: backend.port))
        defer { proxy.shutdown() }
        let client = try H2TestClient(port: proxy.port)
        defer { client.close() }
        let calls = (0..<8).map { _ in
            client.request("POST", "/pkg.Svc/Call", headers: [("content-type", "application/grpc"), ("te", "trailers")],
                           body: [0, 0, 0, 0, 0])
        }
        for r in try calls.map({ try $0.wait() }) {
            #expect(r.status == 200)
            #expect(r.data == [0, 0, 0, 0, 2, 8, 1])
            #expect(r.headerBlocks.count == 2)
            #expect(r.trailer("grpc-status") == "0")
            #expect(r.trailer("grpc-message") == "fine")
        }
        #expect(backend.connections.withLockedValue { $0 } == 1)
        #expect(try proxy.stat("cluster.backend.upstream_cx_http2_total") == 1)
        #expect(try proxy.stat("cluster.backend.upstream_rq_total") == 8)
        // te: trailers crosses (gRPC servers insist on it); the authority arrives as :authority.
        let seen = backend.requests.withLockedValue { $0 }
        #expect(seen.allSatisfy { r in r.contains { $0 == ("te", "trailers") } })
        #expect(seen.allSatisfy { r in r.contains { $0 == (":authority", "example.com") } })
    }

    @Test func aTrailersOnlyResponseStaysOneHeadersFrame() throws {
        let backend = try H2TestBackend { _ in
            .init(headers: [("content-type", "application/grpc"), ("grpc-status", "12"),
                            ("grpc-message", "Method not found!")], trailersOnly: true)
        }
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: Self.h2Cluster(port: backend.port))
        defer { proxy.shutdown() }
        let client = try H2TestClient(port: proxy.port)
        defer { client.close() }
        let r = try client.request("POST", "/pkg.Svc/Nope", headers: [("content-type", "application/grpc")],
                                   body: [0, 0, 0, 0, 0]).wait()
        #expect(r.status == 200)
        #expect(r.headerBlocks.count == 1)
        #expect(r.headerBlocks.first?.endStream == true)
        #expect(r.dataFrames == 0)
        #expect(r.header("grpc-status") == "12")
        #expect(r.header("content-length") == nil)
    }

    @Test func maxConcurrentStreamsOpensAnotherConnection() throws {
        let backend = try H2TestBackend { _ in .init(body: Array("slow".utf8), delay: .milliseconds(300)) }
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: Self.h2Cluster(port: backend.port, clusterOptions: "{max_concurrent_streams: 2}"))
        defer { proxy.shutdown() }
        let client = try H2TestClient(port: proxy.port)
        defer { client.close() }
        let calls = (0..<5).map { i in client.request("GET", "/\(i)") }
        for r in try calls.map({ try $0.wait() }) { #expect(r.status == 200) }
        // Five at once, two per connection: three connections, never more than two streams on one.
        #expect(try proxy.stat("cluster.backend.upstream_cx_http2_total") == 3)
        #expect(backend.connections.withLockedValue { $0 } == 3)
    }

    @Test func aRefusedStreamIsRetriedUnderRefusedStreamAndNamedOtherwise() throws {
        let calls = NIOLockedValueBox(0)
        let backend = try H2TestBackend { _ in
            let n = calls.withLockedValue { $0 += 1; return $0 }
            return n % 2 == 1 ? .init(reset: .refusedStream) : .init(body: Array("second try".utf8))
        }
        defer { backend.stop() }
        let retrying = try ProxyHarness(yaml: Self.h2Cluster(port: backend.port, routes: [
            #"{match: {prefix: "/"}, route: {cluster: backend, retry_policy: {retry_on: refused-stream, num_retries: 1}}}"#,
        ]))
        defer { retrying.shutdown() }
        let r = try retrying.fetch("GET", "/a")
        #expect(r.status == 200)
        #expect(r.bodyString == "second try")
        #expect(try retrying.stat("cluster.backend.upstream_rq_retry") == 1)
        // Without a retry policy the reset is the answer, in Envoy's words.
        let plain = try ProxyHarness(yaml: Self.h2Cluster(port: backend.port))
        defer { plain.shutdown() }
        let refused = try plain.fetch("GET", "/b")
        #expect(refused.status == 503)
        #expect(refused.bodyString == "upstream connect error or disconnect/reset before headers. reset reason: remote refused stream reset")
    }

    @Test func aGRPCRequestTimesOutAsItsGRPCTimeoutAsks() throws {
        let backend = try H2TestBackend { _ in
            .init(headers: [("content-type", "application/grpc")], body: [0, 0, 0, 0, 0],
                  trailers: [("grpc-status", "0")], delay: .milliseconds(400))
        }
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: Self.h2Cluster(port: backend.port, routes: [
            #"{match: {prefix: "/"}, route: {cluster: backend, timeout: 0.05s, max_stream_duration: {grpc_timeout_header_max: 0s}}}"#,
        ]))
        defer { proxy.shutdown() }
        let client = try H2TestClient(port: proxy.port)
        defer { client.close() }
        func call(_ timeout: String?) throws -> H2StreamResult {
            var headers = [("content-type", "application/grpc"), ("te", "trailers")]
            if let timeout { headers.append(("grpc-timeout", timeout)) }
            return try client.request("POST", "/pkg.Svc/Slow", headers: headers, body: [0, 0, 0, 0, 0]).wait()
        }
        // 100 ms asked: the proxy gives up first, as a gRPC status.
        let short = try call("100m")
        #expect(short.status == 200)
        #expect(short.header("grpc-status") == "14")
        #expect(short.header("grpc-message") == "upstream request timeout")
        // 2 s asked: the 50 ms route timeout does not apply to this gRPC request.
        #expect(try call("2S").trailer("grpc-status") == "0")
        // No grpc-timeout and no cap: no timeout at all.
        #expect(try call(nil).trailer("grpc-status") == "0")
        #expect(try proxy.stat("cluster.backend.upstream_rq_timeout") == 1)
        // The upstream is told how long it has.
        let sent = backend.requests.withLockedValue { $0 }
        #expect(sent.first?.first { $0.0 == "x-envoy-expected-rq-timeout-ms" }?.1 == "100")
    }

    @Test func anHTTP1ClientReachesAnHTTP2Upstream() throws {
        let backend = try H2TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: Self.h2Cluster(port: backend.port))
        defer { proxy.shutdown() }
        for _ in 0..<3 {
            let r = try proxy.fetch("GET", "/hello")
            #expect(r.status == 200)
            #expect(r.bodyString == "h2 hello")
        }
        #expect(backend.connections.withLockedValue { $0 } == 1)
    }

    // MARK: gRPC over HTTP/1 (grpc_http1_bridge)

    @Test func theHTTP1BridgeTurnsTrailersIntoHeaders() throws {
        let backend = try H2TestBackend { head in
            let failing = head.contains { $0 == (":path", "/pkg.Svc/Fail") }
            return .init(headers: [("content-type", "application/grpc")], body: [0, 0, 0, 0, 1, 7],
                         trailers: failing ? [("grpc-status", "5"), ("grpc-message", "not found")] : [("grpc-status", "0")])
        }
        defer { backend.stop() }
        let yaml = Self.h2Cluster(port: backend.port, httpFilters: [
            #"{name: envoy.filters.http.grpc_http1_bridge, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.grpc_http1_bridge.v3.Config}}"#,
        ])
        let proxy = try ProxyHarness(yaml: yaml)
        defer { proxy.shutdown() }
        let frame = "\u{0}\u{0}\u{0}\u{0}\u{0}"
        for (path, status, grpcStatus, message) in [("/pkg.Svc/Ok", 200, "0", nil), ("/pkg.Svc/Fail", 503, "5", "not found")] {
            let c = try proxy.client()
            try c.send("POST \(path) HTTP/1.1\r\nhost: example.com\r\ncontent-type: application/grpc\r\n"
                       + "content-length: 5\r\n\r\n" + frame)
            let r = try c.readResponse()
            #expect(r.status == status, "\(path)")
            #expect(r.header("grpc-status") == grpcStatus)
            #expect(r.header("grpc-message") == message)
            #expect(r.header("content-length") == "6")
            #expect(r.body == [0, 0, 0, 0, 1, 7])
        }
        // Over HTTP/2 the trailers stay trailers.
        let h2 = try H2TestClient(port: proxy.port)
        defer { h2.close() }
        let r = try h2.request("POST", "/pkg.Svc/Fail", headers: [("content-type", "application/grpc")],
                               body: [0, 0, 0, 0, 0]).wait()
        #expect(r.status == 200)
        #expect(r.header("grpc-status") == nil)
        #expect(r.trailer("grpc-status") == "5")
    }

    @Test func gRPCStatsCountCallsStatusesAndMessagesPerCluster() throws {
        let backend = try H2TestBackend { head in
            if head.contains(where: { $0 == (":path", "/pkg.Svc/Missing") }) {
                return .init(headers: [("content-type", "application/grpc"), ("grpc-status", "12")], trailersOnly: true)
            }
            return .init(headers: [("content-type", "application/grpc")], body: [0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 0],
                         trailers: [("grpc-status", "0")])
        }
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: Self.h2Cluster(port: backend.port, httpFilters: [
            #"{name: envoy.filters.http.grpc_stats, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig, individual_method_stats_allowlist: {services: [{name: pkg.Svc, method_names: [Listed]}]}}}"#,
        ]))
        defer { proxy.shutdown() }
        let client = try H2TestClient(port: proxy.port)
        defer { client.close() }
        for path in ["/pkg.Svc/Listed", "/pkg.Svc/Other", "/pkg.Svc/Missing"] {
            _ = try client.request("POST", path, headers: [("content-type", "application/grpc")],
                                   body: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).wait()
        }
        _ = try client.get("/not-grpc")
        #expect(eventually {
            (try? proxy.stat("cluster.backend.grpc.pkg.Svc.Listed.success")) == 1
        })
        #expect(try proxy.stat("cluster.backend.grpc.pkg.Svc.Listed.0") == 1)
        #expect(try proxy.stat("cluster.backend.grpc.pkg.Svc.Listed.request_message_count") == 2)
        #expect(try proxy.stat("cluster.backend.grpc.pkg.Svc.Listed.response_message_count") == 2)
        #expect(try proxy.stat("cluster.backend.grpc.total") == 2)
        #expect(try proxy.stat("cluster.backend.grpc.success") == 1)
        #expect(try proxy.stat("cluster.backend.grpc.failure") == 1)
        #expect(try proxy.stat("cluster.backend.grpc.12") == 1)
        #expect(try proxy.stat("cluster.backend.grpc.request_message_count") == 4)
        #expect(try proxy.stat("cluster.backend.grpc.response_message_count") == 2)
    }

    // MARK: gRPC-Web

    @Test func gRPCWebCallsBecomeGRPCAndBack() throws {
        let backend = try H2TestBackend { head in
            if head.contains(where: { $0 == (":path", "/pkg.Svc/Missing") }) {
                return .init(headers: [("content-type", "application/grpc"), ("grpc-status", "12")], trailersOnly: true)
            }
            return .init(headers: [("content-type", "application/grpc")], body: [0, 0, 0, 0, 2, 8, 1],
                         trailers: [("grpc-status", "0"), ("grpc-message", "")])
        }
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: Self.h2Cluster(port: backend.port, httpFilters: [
            #"{name: envoy.filters.http.grpc_web, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb}}"#,
        ]))
        defer { proxy.shutdown() }
        // Binary: the message frame, then the trailers as a 0x80 frame, over chunked HTTP/1.1.
        let c = try proxy.client()
        try c.send("POST /pkg.Svc/Call HTTP/1.1\r\nhost: example.com\r\ncontent-type: application/grpc-web+proto\r\n"
                   + "content-length: 5\r\n\r\n\u{0}\u{0}\u{0}\u{0}\u{0}")
        let r = try c.readResponse()
        #expect(r.status == 200)
        #expect(r.header("content-type") == "application/grpc-web+proto")
        let trailer = Array("grpc-status:0\r\ngrpc-message:\r\n".utf8)
        #expect(r.body == [0, 0, 0, 0, 2, 8, 1, 0x80, 0, 0, 0, UInt8(trailer.count)] + trailer)
        // The upstream got gRPC.
        let sent = try #require(backend.requests.withLockedValue { $0.first })
        #expect(sent.contains { $0 == ("content-type", "application/grpc") })
        #expect(sent.contains { $0 == ("te", "trailers") })
        #expect(!sent.contains { $0.0 == "content-length" })
        // Text: base64 in, each frame base64 on its own out.
        try c.send("POST /pkg.Svc/Call HTTP/1.1\r\nhost: example.com\r\ncontent-type: application/grpc-web-text\r\n"
                   + "accept: application/grpc-web-text\r\ncontent-length: 8\r\n\r\nAAAAAAA=")
        let text = try c.readResponse()
        #expect(text.header("content-type") == "application/grpc-web-text+proto")
        #expect(text.bodyString == "AAAAAAIIAQ==" + Data([0x80, 0, 0, 0, UInt8(trailer.count)] + trailer).base64EncodedString())
        // Trailers-only: the status stays in the headers, with no body.
        try c.send("POST /pkg.Svc/Missing HTTP/1.1\r\nhost: example.com\r\ncontent-type: application/grpc-web+proto\r\n"
                   + "content-length: 5\r\n\r\n\u{0}\u{0}\u{0}\u{0}\u{0}")
        let missing = try c.readResponse()
        #expect(missing.header("grpc-status") == "12")
        #expect(missing.header("content-length") == "0")
        #expect(missing.body.isEmpty)
        // Bad base64 is Envoy's local 400.
        try c.send("POST /pkg.Svc/Call HTTP/1.1\r\nhost: example.com\r\ncontent-type: application/grpc-web-text\r\n"
                   + "content-length: 8\r\n\r\nAA*AAAA=")
        let bad = try c.readResponse()
        #expect(bad.status == 400)
        #expect(bad.header("grpc-message") == "Bad gRPC-web request, invalid base64 data.")
    }

    // MARK: Upgrades

    @Test func aWebSocketUpgradeBecomesATunnel() throws {
        let backend = try UpgradeEchoBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port, hcmExtra: ["upgrade_configs: [{upgrade_type: websocket}]"]))
        defer { proxy.shutdown() }
        let c = try proxy.client()
        try c.send("GET /chat HTTP/1.1\r\nhost: example.com\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n")
        let head = try c.readResponse()
        #expect(head.status == 101)
        #expect(head.header("upgrade") == "websocket")
        #expect(head.header("connection") == "Upgrade")
        #expect(head.header("x-envoy-upstream-service-time") == nil)
        // Bytes the upstream sent right behind its 101 come through, then everything is echoed both ways.
        #expect(try c.readExactly(5) == Array("hello".utf8))
        for size in [1, 1000, 200_000] {
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            try c.send(bytes)
            #expect(try c.readExactly(size) == bytes)
        }
        #expect(try proxy.stat("http.ingress_http.downstream_rq_1xx") == 1)
        c.close()
        #expect(eventually { backend.closedConnections.withLockedValue { $0 } == 1 })
    }

    @Test func anUpgradeNoConfigEnablesIsRefusedWith403() throws {
        let backend = try UpgradeEchoBackend()
        defer { backend.stop() }
        let noConfig = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { noConfig.shutdown() }
        let routeOff = try ProxyHarness(yaml: ProxyConfig.single(
            port: backend.port,
            routes: [#"{match: {prefix: "/"}, route: {cluster: backend, upgrade_configs: [{upgrade_type: WebSocket, enabled: false}]}}"#],
            hcmExtra: ["upgrade_configs: [{upgrade_type: websocket}]"]))
        defer { routeOff.shutdown() }
        for proxy in [noConfig, routeOff] {
            let c = try proxy.client()
            try c.send("GET /chat HTTP/1.1\r\nhost: example.com\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n")
            let r = try c.readResponse()
            #expect(r.status == 403)
            #expect(r.header("connection") == "close")
            #expect(c.waitForClose())
        }
        #expect(backend.accepted.withLockedValue { $0 } == 0)
    }

    // MARK: CONNECT

    static func connectConfig(port: Int, terminate: Bool) -> String {
        ProxyConfig.single(port: port, routes: [
            #"{match: {connect_matcher: {}}, route: {cluster: backend, upgrade_configs: [{upgrade_type: CONNECT"#
                + (terminate ? ", connect_config: {}" : "") + "}]}}",
            #"{match: {prefix: "/"}, direct_response: {status: 200, body: {inline_string: "plain"}}}"#,
        ], hcmExtra: ["upgrade_configs: [{upgrade_type: CONNECT}]"])
    }

    @Test func aTerminatedConnectTunnelsToTheCluster() throws {
        // The cluster's host is a TCP echo (the UpgradeEchoBackend answers any first bytes ending in CRLFCRLF with a
        // 101 and then echoes: the tunnel carries whatever the two ends say).
        let backend = try UpgradeEchoBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: Self.connectConfig(port: backend.port, terminate: true))
        defer { proxy.shutdown() }
        let c = try proxy.client()
        try c.send("CONNECT backend.example:443 HTTP/1.1\r\nhost: backend.example:443\r\n\r\n")
        // A 2xx to CONNECT has no body: read the head alone.
        let head = try c.readResponse(head: true)
        #expect(head.status == 200)
        #expect(head.header("server") == "envoy")
        #expect(head.header("content-length") == nil && head.header("transfer-encoding") == nil)
        // What the client sends now reaches the host as it is.
        try c.send("ping\r\n\r\n")
        let answer = try c.readExactly(Array("HTTP/1.1 101 Switching Protocols\r\n".utf8).count)
        #expect(String(decoding: answer, as: UTF8.self) == "HTTP/1.1 101 Switching Protocols\r\n")
        #expect(backend.accepted.withLockedValue { $0 } == 1)
        // A request that is not CONNECT does not match the CONNECT route; a CONNECT matches nothing else.
        #expect(try proxy.fetch("GET", "/x").bodyString == "plain")
    }

    @Test func aForwardedConnectTunnelsOnceTheUpstreamSays200() throws {
        let backend = try ScriptedConnectBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: Self.connectConfig(port: backend.port, terminate: false))
        defer { proxy.shutdown() }
        let c = try proxy.client()
        try c.send("CONNECT target.example:80 HTTP/1.1\r\nhost: target.example:80\r\n\r\n")
        #expect(try c.readResponse(head: true).status == 200)
        try c.send("hello tunnel")
        #expect(try c.readExactly(12) == Array("hello tunnel".utf8))
        #expect(backend.firstLine.withLockedValue { $0 } == "CONNECT target.example:80 HTTP/1.1")
    }

    @Test func connectNeedsAnUpgradeConfigAndAConnectRoute() throws {
        let backend = try UpgradeEchoBackend()
        defer { backend.stop() }
        // No CONNECT upgrade enabled: 403; a CONNECT with no connect_matcher route: 404.
        let noUpgrade = try ProxyHarness(yaml: Self.connectConfig(port: backend.port, terminate: true)
            .replacingOccurrences(of: "upgrade_configs: [{upgrade_type: CONNECT}]", with: "upgrade_configs: [{upgrade_type: CONNECT, enabled: false}]")
            .replacingOccurrences(of: ", upgrade_configs: [{upgrade_type: CONNECT, connect_config: {}}]", with: ""))
        defer { noUpgrade.shutdown() }
        let c = try noUpgrade.client()
        try c.send("CONNECT backend.example:443 HTTP/1.1\r\nhost: backend.example:443\r\n\r\n")
        #expect(try c.readResponse().status == 403)
        let noRoute = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port, hcmExtra: ["upgrade_configs: [{upgrade_type: CONNECT}]"]))
        defer { noRoute.shutdown() }
        let d = try noRoute.client()
        try d.send("CONNECT backend.example:443 HTTP/1.1\r\nhost: backend.example:443\r\n\r\n")
        #expect(try d.readResponse().status == 404)
        #expect(backend.accepted.withLockedValue { $0 } == 0)
    }

    @Test func upgradeAndHTTP2FieldsDecode() throws {
        let yaml = Self.h2Cluster(port: 1, clusterOptions: "{max_concurrent_streams: 7, initial_stream_window_size: 70000}",
                                  hcmExtra: ["http2_protocol_options: {max_concurrent_streams: 50, initial_connection_window_size: 1048576}",
                                             "upgrade_configs: [{upgrade_type: websocket}, {upgrade_type: foo, enabled: false}]"])
        let b = try Bootstrap.load(text: yaml)
        guard case .httpConnectionManager(let hcm) = b.listeners[0].filterChains[0].network else { Issue.record("no hcm"); return }
        #expect(hcm.http2Options.maxConcurrentStreams == 50)
        #expect(hcm.upgradeConfigs == ["websocket": true, "foo": false])
        #expect(b.clusters[0].httpProtocolOptions.http2Options?.maxConcurrentStreams == 7)
        #expect(b.clusters[0].httpProtocolOptions.http2Options?.initialStreamWindowSize == 70000)
        #expect(hcm.http2Options.allowConnect == false)
        let connect = try Bootstrap.load(text: ProxyConfig.single(port: 1, hcmExtra: ["http2_protocol_options: {allow_connect: true}"]))
        guard case .httpConnectionManager(let connectHCM) = connect.listeners[0].filterChains[0].network else {
            Issue.record("no hcm")
            return
        }
        #expect(connectHCM.http2Options.allowConnect)
        // Upstream, allow_connect would send upgrades as extended CONNECT: not done, so refused by name.
        do {
            _ = try Bootstrap.load(text: Self.h2Cluster(port: 1, clusterOptions: "{allow_connect: true}"))
            Issue.record("allow_connect: true on a cluster was accepted")
        } catch {
            #expect("\(error)".contains("allow_connect"), "\(error)")
            #expect("\(error)".contains("cluster"), "\(error)")
        }
        for (field, message) in [
            ("http2_protocol_options: {initial_stream_window_size: 100}", "out of range"),
            ("http2_protocol_options: {connection_keepalive: {interval: 1s}}", "connection_keepalive"),
            ("upgrade_configs: [{upgrade_type: websocket, filters: []}]", "filters"),
        ] {
            let bad = ProxyConfig.single(port: 1, hcmExtra: [field])
            #expect(throws: ConfigError.self, "\(field)") { try Bootstrap.load(text: bad) }
            let text = (try? Bootstrap.load(text: bad)).map { _ in "" } ?? {
                do { _ = try Bootstrap.load(text: bad); return "" } catch { return "\(error)" }
            }()
            #expect(text.contains(message), "\(field): \(text)")
        }
    }
}

/// An upstream CONNECT proxy: it answers the first request head with `200 OK` and then echoes every byte.
final class ScriptedConnectBackend: @unchecked Sendable {
    let port: Int
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel: Channel
    let firstLine = NIOLockedValueBox<String?>(nil)

    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let backend: ScriptedConnectBackend
        var head = [UInt8]()
        var tunnel = false
        init(_ backend: ScriptedConnectBackend) { self.backend = backend }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            if tunnel {
                context.writeAndFlush(NIOAny(buffer), promise: nil)
                return
            }
            head += buffer.readBytes(length: buffer.readableBytes) ?? []
            guard let end = head.firstRange(of: Array("\r\n\r\n".utf8)) else { return }
            tunnel = true
            let line = String(decoding: head.prefix { $0 != 13 }, as: UTF8.self)
            backend.firstLine.withLockedValue { $0 = line }
            var out = context.channel.allocator.buffer(string: "HTTP/1.1 200 OK\r\n\r\n")
            context.writeAndFlush(NIOAny(out), promise: nil)
            let rest = Array(head[end.upperBound...])
            if !rest.isEmpty {
                out = context.channel.allocator.buffer(bytes: rest)
                context.writeAndFlush(NIOAny(out), promise: nil)
            }
        }
    }

    init() throws {
        let box = NIOLockedValueBox<ScriptedConnectBackend?>(nil)
        channel = try ServerBootstrap(group: group)
            .childChannelInitializer { ch in
                ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(Handler(box.withLockedValue { $0! })) }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        port = channel.localAddress?.port ?? 0
        box.withLockedValue { $0 = self }
    }

    func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// A raw TCP upstream that accepts any upgrade: it answers `101 Switching Protocols`, sends "hello" right behind it
/// (in the same write), then echoes every byte.
final class UpgradeEchoBackend: @unchecked Sendable {
    let port: Int
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel: Channel
    let accepted = NIOLockedValueBox(0)
    let closedConnections = NIOLockedValueBox(0)

    final class Echo: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let backend: UpgradeEchoBackend
        var head = [UInt8]()
        var upgraded = false
        init(_ backend: UpgradeEchoBackend) { self.backend = backend }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            if upgraded {
                context.writeAndFlush(NIOAny(buffer), promise: nil)
                return
            }
            head += buffer.readBytes(length: buffer.readableBytes) ?? []
            guard let end = head.firstRange(of: Array("\r\n\r\n".utf8)) else { return }
            upgraded = true
            var out = context.channel.allocator.buffer(string:
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello")
            out.writeBytes(head[end.upperBound...])
            context.writeAndFlush(NIOAny(out), promise: nil)
        }
        func channelInactive(context: ChannelHandlerContext) {
            backend.closedConnections.withLockedValue { $0 += 1 }
        }
    }

    init() throws {
        let box = NIOLockedValueBox<UpgradeEchoBackend?>(nil)
        let accepted = self.accepted
        channel = try ServerBootstrap(group: group)
            .childChannelInitializer { ch in
                accepted.withLockedValue { $0 += 1 }
                return ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(Echo(box.withLockedValue { $0! }))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        port = channel.localAddress?.port ?? 0
        box.withLockedValue { $0 = self }
    }

    func stop() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}
