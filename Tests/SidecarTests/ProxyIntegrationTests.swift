import Dispatch
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Testing
@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// End-to-end: a real `SidecarServer` on loopback ports in front of an in-process NIO backend, driven
/// byte by byte through blocking sockets. Each test starts its own backend and proxy on port 0.
@Suite(.serialized)
struct ProxyIntegrationTests {
    static let connectFailurePrefix = "upstream connect error or disconnect/reset before headers"

    // MARK: 1. The seed walkthrough

    @Test func seedWalkthroughForwardsServiceRequests() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(
            port: backend.port, routes: [#"{match: {prefix: "/service"}, route: {cluster: backend}}"#]))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        try client.send(RawClient.request("GET", "/service", headers: ["connection: close"]))
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.bodyString == "Hello from service!")
        #expect(response.header("connection") == "close")
        #expect(client.waitForClose(), "connection: close was not honoured")
        #expect(backend.lastHead?.method == "GET")
        #expect(backend.lastHead?.uri == "/service")
    }

    /// Regression: a DNS cluster's refresh state was made off its event loop and crashed start-up.
    @Test func strictDNSClusterStartsAndProxies() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let yaml = ProxyConfig.single(port: backend.port)
            .replacingOccurrences(of: "type: STATIC", with: "type: STRICT_DNS, dns_lookup_family: V4_ONLY, dns_refresh_rate: 0.2s")
            .replacingOccurrences(of: "address: 127.0.0.1, port_value: \(backend.port)", with: "address: localhost, port_value: \(backend.port)")
        #expect(yaml.contains("STRICT_DNS") && yaml.contains("address: localhost"))
        let proxy = try ProxyHarness(yaml: yaml)
        defer { proxy.shutdown() }
        Thread.sleep(forTimeInterval: 0.5)  // a few refreshes
        let response = try proxy.fetch("GET", "/")
        #expect(response.status == 200)
    }

    // MARK: 2. Connection reuse

    @Test func keepAliveAndPooledUpstreamReuseOneConnection() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        // 20 requests on one downstream connection.
        let client = try proxy.client()
        for i in 0..<20 {
            try client.send(RawClient.request("GET", "/service?i=\(i)"))
            let response = try client.readResponse()
            #expect(response.status == 200)
            #expect(response.bodyString == "Hello from service!")
            #expect(response.header("connection") == nil)
        }
        client.close()
        #expect(backend.acceptedConnections == 1)

        // 10 downstream connections one after another: the pooled upstream connection serves them all.
        for i in 0..<10 {
            let c = try proxy.client()
            let headers = i.isMultiple(of: 2) ? ["connection: close"] : []
            try c.send(RawClient.request("GET", "/service?conn=\(i)", headers: headers))
            let response = try c.readResponse()
            #expect(response.status == 200)
            #expect(response.bodyString == "Hello from service!")
            c.close()
        }
        #expect(backend.acceptedConnections == 1)
        #expect(backend.requestCount == 30)

        let stats = try proxy.stats()
        #expect(stats["cluster.backend.upstream_cx_total"] == "1")
        #expect(stats["cluster.backend.upstream_rq_total"] == "30")
        #expect(stats["http.ingress_http.downstream_cx_total"] == "11")
        // The listener counts its connections too (it has one filter chain: no FilterChainDispatcher counts them).
        #expect(stats["listener.127.0.0.1_0.downstream_cx_total"] == "11")
        #expect(stats["http.ingress_http.downstream_rq_total"] == "30")
    }

    // MARK: 3. No route

    @Test func noRouteIs404WithEmptyBody() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(
            port: backend.port, routes: [#"{match: {prefix: "/service"}, route: {cluster: backend}}"#]))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        try client.send(RawClient.request("GET", "/elsewhere"))
        let response = try client.readResponse()
        #expect(response.status == 404)
        #expect(response.body.isEmpty)
        #expect(response.header("content-length") == "0")
        // The connection stays usable after a local 404.
        try client.send(RawClient.request("GET", "/service"))
        #expect(try client.readResponse().status == 200)

        #expect(backend.requestCount == 1)
        let stats = try proxy.stats()
        #expect(stats["http.ingress_http.no_route"] == "1")
        #expect(stats["http.ingress_http.downstream_rq_4xx"] == "1")
    }

    // MARK: 4. Upstream refuses connections

    @Test func closedUpstreamPortIs503ConnectFailure() throws {
        let deadPort = try closedLocalPort()
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: deadPort))
        defer { proxy.shutdown() }

        let response = try proxy.fetch("GET", "/service")
        #expect(response.status == 503)
        #expect(response.bodyString.hasPrefix(Self.connectFailurePrefix), "body: \(response.bodyString)")
        let stats = try proxy.stats()
        #expect(stats["cluster.backend.upstream_cx_connect_fail"] == "1")
        // Envoy 1.40 counts the refused connection as one that was made and destroyed, on the HTTP/1.1 codec.
        #expect(stats["cluster.backend.upstream_cx_total"] == "1")
        #expect(stats["cluster.backend.upstream_cx_http1_total"] == "1")
        #expect(stats["cluster.backend.upstream_cx_destroy"] == "1")
        #expect(stats["cluster.backend.upstream_cx_active"] == "0")
        #expect(stats["cluster.backend.upstream_rq_503"] == "1")
        // As in Envoy, a request that never got a connection was pending, not an upstream request.
        #expect(stats["cluster.backend.upstream_rq_pending_total"] == "1")
        #expect(stats["cluster.backend.upstream_rq_total"] == "0")
        // /clusters counts it for the host the same way (Envoy 1.40: cx_total 1, cx_connect_fail 1).
        let host = "backend::127.0.0.1:\(deadPort)::"
        let clusters = try proxy.admin("GET", "/clusters").bodyString
        #expect(clusters.contains(host + "cx_total::1\n"), "\(clusters)")
        #expect(clusters.contains(host + "cx_connect_fail::1\n"))
        #expect(clusters.contains(host + "cx_active::0\n"))
    }

    // MARK: 5. Route timeout

    @Test func routeTimeoutIs504() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(
            port: backend.port, routes: [#"{match: {prefix: "/"}, route: {cluster: backend, timeout: 0.3s}}"#]))
        defer { proxy.shutdown() }

        let start = Date()
        let response = try proxy.fetch("GET", "/slow?ms=3000")
        let elapsed = Date().timeIntervalSince(start)
        #expect(response.status == 504)
        #expect(response.bodyString == "upstream request timeout")
        #expect(elapsed >= 0.25 && elapsed < 2, "took \(elapsed)s")
        #expect(backend.lastHead?.header("x-envoy-expected-rq-timeout-ms") == "300")
        let stats = try proxy.stats()
        #expect(stats["cluster.backend.upstream_rq_timeout"] == "1")
        #expect(stats["http.ingress_http.downstream_rq_5xx"] == "1")
    }

    /// One timer serves every request of a keep-alive connection (`LazyDeadlineTimer`): the task armed for the
    /// first request fires while the second is in flight, and must wait for the second's own deadline.
    @Test func routeTimeoutOfALaterRequestOnTheConnectionCountsFromThatRequest() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(
            port: backend.port, routes: [#"{match: {prefix: "/"}, route: {cluster: backend, timeout: 0.4s}}"#]))
        defer { proxy.shutdown() }

        let client = try proxy.client(timeout: 5)
        try client.send(RawClient.request("GET", "/service"))
        #expect(try client.readResponse().status == 200)
        Thread.sleep(forTimeInterval: 0.25)
        let start = Date()
        try client.send(RawClient.request("GET", "/slow?ms=3000"))
        let response = try client.readResponse()
        let elapsed = Date().timeIntervalSince(start)
        #expect(response.status == 504)
        // The first request's deadline passed 0.15 s into this one; its own comes at 0.4 s.
        #expect(elapsed >= 0.35 && elapsed < 2, "took \(elapsed)s")
        // And a third request is not timed out by anything left over.
        try client.send(RawClient.request("GET", "/service"))
        #expect(try client.readResponse().status == 200)
    }

    // MARK: 6. Upstream reset mid-response

    @Test func upstreamResetMidResponseClosesDownstream() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        try client.send(RawClient.request("GET", "/reset"))
        // Throws (timeout) if the proxy keeps the connection open waiting for the missing 990 bytes.
        let raw = try client.readUntilEOF()
        let headEnd = try #require(raw.firstRange(of: Array("\r\n\r\n".utf8)))
        let head = String(decoding: raw[..<headEnd.lowerBound], as: UTF8.self).lowercased()
        let body = raw[headEnd.upperBound...]
        #expect(head.hasPrefix("http/1.1 200"))
        #expect(head.contains("content-length: 1000"))
        #expect(body.count < 1000)
        #expect(body.count == 10)
    }

    // MARK: 7. Upstream closes before answering

    @Test func upstreamCloseBeforeHeadersIs503() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        try client.send(RawClient.request("GET", "/close"))
        let response = try client.readResponse()
        #expect(response.status == 503)
        #expect(response.bodyString.hasPrefix(Self.connectFailurePrefix), "body: \(response.bodyString)")
        // A local 503 keeps the downstream connection: the next request is served.
        try client.send(RawClient.request("GET", "/service"))
        let next = try client.readResponse()
        #expect(next.status == 200)
        #expect(next.bodyString == "Hello from service!")
        #expect(try proxy.stat("cluster.backend.upstream_rq_503") == 1)
    }

    // MARK: 8. Client goes away

    @Test func clientDisconnectCancelsUpstreamRequest() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        try client.send(RawClient.request("GET", "/slow?ms=2000"))
        #expect(eventually { backend.requestCount == 1 }, "the request never reached the backend")
        client.close()
        // Not cancelled, the backend connection would stay open: answered after 2 s and then pooled.
        #expect(eventually(timeout: 1) { backend.closedConnections == 1 }, "upstream connection still open")
        #expect(eventually(timeout: 1) { (try? proxy.stat("cluster.backend.upstream_cx_active")) == 0 })
    }

    // MARK: Gauges return to zero

    @Test func activeGaugesReturnToZeroAfterEveryKindOfEnding() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let deadPort = try closedLocalPort()
        let proxy = try ProxyHarness(yaml: ProxyConfig.yaml(
            routes: [
                #"{match: {prefix: "/dead"}, route: {cluster: dead}}"#,
                #"{match: {prefix: "/"}, route: {cluster: backend, timeout: 0.3s}}"#,
            ],
            clusters: [("backend", backend.port), ("dead", deadPort)]))
        defer { proxy.shutdown() }

        #expect(try proxy.fetch("GET", "/service").status == 200)
        #expect(try proxy.fetch("GET", "/slow?ms=2000").status == 504)
        #expect(try proxy.fetch("GET", "/close").status == 503)
        #expect(try proxy.fetch("GET", "/dead").status == 503)
        #expect(try proxy.fetch("GET", "/status/500").status == 500)
        let reset = try proxy.client()
        try reset.send(RawClient.request("GET", "/reset"))
        #expect(reset.waitForClose())
        let gone = try proxy.client()
        try gone.send(RawClient.request("GET", "/slow?ms=250"))
        #expect(eventually { backend.heads.last?.uri == "/slow?ms=250" })
        gone.close()

        let gauges = [
            "http.ingress_http.downstream_rq_active", "http.ingress_http.downstream_cx_active",
            "cluster.backend.upstream_rq_active", "cluster.backend.upstream_rq_pending_active",
            "cluster.dead.upstream_rq_active", "cluster.dead.upstream_rq_pending_active", "cluster.dead.upstream_cx_active",
        ]
        var last: [String: String] = [:]
        let settled = eventually {
            last = (try? proxy.stats()) ?? [:]
            return gauges.allSatisfy { last[$0] == "0" }
        }
        #expect(settled, "gauges: \(gauges.map { "\($0)=\(last[$0] ?? "-")" })")
        #expect(last["http.ingress_http.downstream_rq_total"] == "7")
        #expect(last["cluster.backend.upstream_rq_total"] == "6")
        #expect(last["cluster.dead.upstream_rq_total"] == "0")
        #expect(last["cluster.dead.upstream_rq_pending_total"] == "1")
    }

    // MARK: 9. HTTP/1.0

    @Test func http10IsRejectedWith426ByDefault() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        try client.send(RawClient.request("GET", "/service", version: "HTTP/1.0"))
        let response = try client.readResponse()
        #expect(response.status == 426)
        #expect(client.waitForClose(), "connection left open after 426")
        #expect(backend.requestCount == 0)
    }

    @Test func http10IsServedWithAcceptHTTP10() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(
            port: backend.port, hcmExtra: ["http_protocol_options: {accept_http_10: true}"]))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        try client.send(RawClient.request("GET", "/service", version: "HTTP/1.0"))
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.bodyString == "Hello from service!")
        #expect(client.waitForClose(), "an HTTP/1.0 request without keep-alive must end with a close")
        #expect(backend.lastHead?.header("host") == "example.com")
    }

    // MARK: 10. Pipelining

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        // The first is the slow one: answering in arrival order is the only way to get this right.
        try client.send(RawClient.request("GET", "/slow?ms=200") + RawClient.request("GET", "/status/201")
            + RawClient.request("GET", "/status/202"))
        let first = try client.readResponse()
        let second = try client.readResponse()
        let third = try client.readResponse()
        #expect(first.status == 200)
        #expect(first.bodyString == "Hello from service!")
        #expect(second.status == 201)
        #expect(second.bodyString == "status 201")
        #expect(third.status == 202)
        #expect(third.bodyString == "status 202")
        #expect(backend.heads.map(\.uri) == ["/slow?ms=200", "/status/201", "/status/202"])
    }

    @Test func pipelinedMixOfLocalRepliesBodiesAndHead() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port, routes: [
            #"{match: {path: "/direct"}, direct_response: {status: 200, body: {inline_string: "direct"}}}"#,
            #"{match: {prefix: "/", headers: [{name: x-route, present_match: true}]}, route: {cluster: backend}}"#,
        ]))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        let routed = ["x-route: 1"]
        try client.send(
            "POST /nowhere HTTP/1.1\r\nhost: example.com\r\ncontent-length: 5\r\n\r\nhello"  // 404, body discarded
                + RawClient.request("GET", "/service", headers: routed)
                + "POST /echo HTTP/1.1\r\nhost: example.com\r\nx-route: 1\r\ncontent-length: 3\r\n\r\nabc"
                + RawClient.request("GET", "/direct")
                + RawClient.request("HEAD", "/service", headers: routed)
                + RawClient.request("GET", "/status/204", headers: routed)
                + RawClient.request("GET", "/status/203", headers: routed))
        let r404 = try client.readResponse()
        #expect(r404.status == 404)
        #expect(r404.body.isEmpty)
        let hello = try client.readResponse()
        #expect(hello.status == 200)
        #expect(hello.bodyString == "Hello from service!")
        let echo = try client.readResponse()
        #expect(echo.status == 200)
        #expect(echo.bodyString == "abc")
        let direct = try client.readResponse()
        #expect(direct.status == 200)
        #expect(direct.bodyString == "direct")
        let head = try client.readResponse(head: true)
        #expect(head.status == 200)
        #expect(head.header("content-length") == "19")
        let noContent = try client.readResponse()
        #expect(noContent.status == 204)
        let last = try client.readResponse()
        #expect(last.status == 203)
        #expect(last.bodyString == "status 203")
        #expect(backend.heads.map(\.uri) == ["/service", "/echo", "/service", "/status/204", "/status/203"])
        #expect(backend.acceptedConnections == 1)
    }

    @Test func manyPipelinedRequestsInOneSend() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        // More parts than the proxy queues before it stops reading.
        let codes = (0..<150).map { 200 + $0 % 100 }.filter { $0 != 204 }
        try client.send(codes.map { RawClient.request("GET", "/status/\($0)") }.joined())
        for code in codes {
            let response = try client.readResponse()
            #expect(response.status == code)
            #expect(response.bodyString == "status \(code)")
            if response.status != code { break }
        }
        // Still in step afterwards.
        try client.send(RawClient.request("GET", "/service"))
        #expect(try client.readResponse().bodyString == "Hello from service!")
        #expect(backend.requestCount == codes.count + 1)
    }

    // MARK: Upstream connection: close

    @Test func upstreamConnectionCloseIsNotReused() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        // Pipelined, so the second request is routed the moment the first response ends, before the
        // upstream's FIN can have been read: only honouring `connection: close` keeps it off that connection.
        let client = try proxy.client()
        try client.send(RawClient.request("GET", "/close-after") + RawClient.request("GET", "/service"))
        let first = try client.readResponse()
        #expect(first.status == 200)
        #expect(first.bodyString == "Hello from service!")
        #expect(first.header("connection") == nil)
        let second = try client.readResponse()
        #expect(second.status == 200)
        #expect(second.bodyString == "Hello from service!")
        #expect(backend.acceptedConnections == 2)

        // Sequentially, too.
        for _ in 0..<5 {
            try client.send(RawClient.request("GET", "/close-after"))
            #expect(try client.readResponse().status == 200)
            try client.send(RawClient.request("GET", "/service"))
            #expect(try client.readResponse().status == 200)
        }
        #expect(try proxy.stat("cluster.backend.upstream_rq_503") == nil)
    }

    // MARK: 11. Malformed requests

    @Test func garbageRequestLineIs400AndClose() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        try client.send("this is not http\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 400)
        #expect(client.waitForClose())
        #expect(backend.requestCount == 0)
    }

    @Test func oversizeHeadersAre431AndClose() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        let value = String(repeating: "a", count: 1000)
        let headers = (0..<70).map { "x-filler-\($0): \(value)" }  // ~70 KiB, over the 60 KiB default
        try client.send(RawClient.request("GET", "/service", headers: headers))
        let response = try client.readResponse()
        #expect(response.status == 431)
        #expect(client.waitForClose())
        #expect(backend.requestCount == 0)
    }

    @Test func contentLengthWithChunkedIs400AndClose() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        try client.send("POST /echo HTTP/1.1\r\nhost: example.com\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"
            + "5\r\nhello\r\n0\r\n\r\nGET /service HTTP/1.1\r\nhost: example.com\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 400)
        #expect(client.waitForClose())
        #expect(backend.requestCount == 0)
    }

    /// Envoy 1.40's codec answers: 501 for a transfer coding other than `chunked` alone (the ones the parser refuses
    /// and the list it takes), 426 for a version other than 1.0 and 1.1; each closes, and nothing reaches the backend.
    @Test(arguments: [
        ("POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501),
        ("POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501),
        ("POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n", 501),
        ("GET /service\r\n\r\n", 426),
        ("GET /service HTTP/2.0\r\nhost: a\r\n\r\n", 426),
        ("GET /service HTTP/1.2\r\nhost: a\r\n\r\n", 426),
        ("GET /service HTTP/1.x\r\nhost: a\r\n\r\n", 400),
    ])
    func codecRefusalsAnswerAsEnvoys(request: String, status: Int) throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        try client.send(request)
        let response = try client.readResponse()
        #expect(response.status == status)
        #expect(response.version == "HTTP/1.1")
        #expect(response.bodyString == [400: "Bad Request", 426: "Upgrade Required", 501: "Not Implemented"][status])
        #expect(client.waitForClose())
        #expect(backend.requestCount == 0)
    }

    /// Malformed bytes pipelined behind complete requests are the next request's: as Envoy does, the requests before
    /// them are answered (the last with `connection: close`) and the connection ends, with no answer to the
    /// malformed one.
    @Test(arguments: [1, 2])
    func aMalformedRequestPipelinedBehindGoodOnesEndsTheConnectionAfterThem(good: Int) throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        let goodRequests = String(repeating: "GET /service HTTP/1.1\r\nhost: a\r\n\r\n", count: good)
        try client.send(goodRequests + "GET /next HTTP/2.0\r\nhost: a\r\n\r\n")
        for i in 0..<good {
            let response = try client.readResponse()
            #expect(response.status == 200)
            if i == good - 1 { #expect(response.header("connection") == "close") }
        }
        #expect(client.waitForClose())
        #expect(backend.requestCount == good)
        #expect(try proxy.stat("http.ingress_http.downstream_cx_protocol_error") == 1)
    }

    /// A client that sends two pipelined requests and resets the connection at once: the proxy reads both with the
    /// reset, its answer to the first fails to write and closes the connection, and the decoder then hands it the
    /// second from the same read. Nothing may start for it. (Found by the http1 fuzz target: the second request
    /// opened an upstream connection for a downstream already gone, whose connect then reached the removed handler
    /// and trapped.)
    @Test func pipelinedRequestsBehindAResetStartNothing() throws {
        let (listener, upstreamPort) = try LoopbackSockets.listen()
        defer { Glibc.close(listener) }
        let direct = #"{match: {prefix: "/direct"}, direct_response: {status: 200, body: {inline_string: hi}}}"#
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: upstreamPort, routes: [direct, ProxyConfig.catchAll]))
        defer { proxy.shutdown() }
        let loop = try #require(proxy.server.workers.first?.loop)

        for _ in 0..<5 {
            let client = try proxy.client()
            usleep(50_000)  // accepted
            // The worker is held while the requests and the reset arrive, so it finds them together.
            loop.execute { usleep(200_000) }
            usleep(20_000)
            try client.send("GET /direct HTTP/1.1\r\nhost: a\r\n\r\nGET /b HTTP/1.1\r\nhost: a\r\n\r\n")
            client.abort()
            usleep(400_000)
        }
        #expect(throws: (any Error).self, "an upstream connection was opened for a client that was gone") {
            Glibc.close(try LoopbackSockets.accept(listener, timeout: 0.3))
        }
        #expect(try proxy.stat("cluster.backend.upstream_cx_total") == 0)
        #expect(try proxy.stat("http.ingress_http.downstream_cx_active") == 0)
        #expect(try proxy.fetch("GET", "/direct").status == 200)
    }

    // MARK: 12. Expect: 100-continue

    @Test func expectContinueIsAnsweredByTheProxy() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        try client.send("POST /echo HTTP/1.1\r\nhost: example.com\r\ncontent-length: 11\r\nexpect: 100-continue\r\n\r\n")
        let interim = try client.readResponse()
        #expect(interim.status == 100)
        #expect(interim.version == "HTTP/1.1")
        try client.send("hello world")
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.bodyString == "hello world")
        let seen = try #require(backend.lastHead)
        #expect(seen.header("expect") == nil)
        #expect(seen.method == "POST")
        #expect(seen.header("content-length") == "11")
    }

    // MARK: 13. Headers Envoy adds, removes and rewrites

    @Test func upstreamRequestAndResponseHeaders() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port, routes: [
            #"{match: {prefix: "/rewrite-host"}, route: {cluster: backend, host_rewrite_literal: upstream.internal}}"#,
            #"{match: {prefix: "/old/"}, route: {cluster: backend, prefix_rewrite: "/new/"}}"#,
            ProxyConfig.catchAll,
        ]))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        try client.send(RawClient.request("GET", "/service", host: "app.example.com:8080",
                                          headers: ["connection: keep-alive", "keep-alive: timeout=5"]))
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.header("server") == "envoy")
        let serviceTime = try #require(response.header("x-envoy-upstream-service-time"))
        #expect(Int(serviceTime) != nil)

        var seen = try #require(backend.lastHead)
        #expect(seen.uri == "/service")
        #expect(seen.headerValues("host") == ["app.example.com:8080"])
        #expect(seen.headerValues("x-forwarded-proto") == ["http"])
        #expect(seen.header("x-request-id")?.count == 36)
        #expect(seen.headerValues("x-envoy-expected-rq-timeout-ms") == ["15000"])
        #expect(seen.header("connection") == nil)
        #expect(seen.header("keep-alive") == nil)

        try client.send(RawClient.request("GET", "/service", headers: ["x-request-id: my-own-request-id"]))
        #expect(try client.readResponse().status == 200)
        seen = try #require(backend.lastHead)
        #expect(seen.headerValues("x-request-id") == ["my-own-request-id"])

        try client.send(RawClient.request("GET", "/rewrite-host/a"))
        #expect(try client.readResponse().status == 200)
        seen = try #require(backend.lastHead)
        #expect(seen.headerValues("host") == ["upstream.internal"])
        #expect(seen.uri == "/rewrite-host/a")

        try client.send(RawClient.request("GET", "/old/thing?q=1"))
        #expect(try client.readResponse().status == 200)
        seen = try #require(backend.lastHead)
        #expect(seen.uri == "/new/thing?q=1")
        #expect(seen.headerValues("host") == ["example.com"])
    }

    // MARK: 14. HEAD

    @Test func headResponseHasNoBodyAndKeepsTheConnection() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        try client.send(RawClient.request("HEAD", "/service"))
        let head = try client.readResponse(head: true)
        #expect(head.status == 200)
        #expect(head.header("content-length") == "19")
        #expect(backend.lastHead?.method == "HEAD")

        // Any stray body bytes after the HEAD response would corrupt this one.
        try client.send(RawClient.request("GET", "/service"))
        let get = try client.readResponse()
        #expect(get.status == 200)
        #expect(get.bodyString == "Hello from service!")
        #expect(backend.acceptedConnections == 1)
    }

    // MARK: 15. Large chunked upload

    @Test func largeChunkedUploadIsEchoedIntact() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        // ~5 MB of a non-repeating pattern, so a dropped or reordered chunk shows.
        var payload = [UInt8](repeating: 0, count: 5 * 1024 * 1024 + 123)
        var x: UInt32 = 2_463_534_242
        for i in payload.indices {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5
            payload[i] = UInt8(truncatingIfNeeded: x)
        }
        let upload = payload

        let client = try proxy.client(timeout: 10)
        let sendError = NIOLockedValueBox<(any Error)?>(nil)
        let sent = DispatchSemaphore(value: 0)
        // Send on another thread while this one reads the echo, as a real client would.
        DispatchQueue.global().async {
            do {
                try client.send("POST /echo HTTP/1.1\r\nhost: example.com\r\ntransfer-encoding: chunked\r\n\r\n")
                var offset = 0
                let chunkSize = 64 * 1024 + 7
                while offset < upload.count {
                    let end = min(offset + chunkSize, upload.count)
                    try client.send(Array(String(end - offset, radix: 16).utf8) + [13, 10] + Array(upload[offset..<end]) + [13, 10])
                    offset = end
                }
                try client.send("0\r\n\r\n")
            } catch {
                sendError.withLockedValue { $0 = error }
            }
            sent.signal()
        }
        let response = try client.readResponse()
        #expect(sent.wait(timeout: .now() + 10) == .success)
        #expect(sendError.withLockedValue { $0 } == nil)
        #expect(response.status == 200)
        #expect(response.body.count == payload.count)
        #expect(response.body == payload)
    }

    // MARK: 16. Admin

    @Test func adminEndpoints() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port))
        defer { proxy.shutdown() }

        for _ in 0..<3 { #expect(try proxy.fetch("GET", "/service").status == 200) }

        let ready = try proxy.admin("GET", "/ready")
        #expect(ready.status == 200)
        #expect(ready.bodyString == "LIVE\n")
        // The binary holds readiness from before start until it has dropped its capabilities.
        proxy.server.holdReadiness()
        let initializing = try proxy.admin("GET", "/ready")
        #expect(initializing.status == 503)
        #expect(initializing.bodyString == "INITIALIZING\n")
        proxy.server.releaseReadiness()
        #expect(try proxy.admin("GET", "/ready").status == 200)

        #expect(try proxy.admin("GET", "/quitquitquit").status == 405)
        // Still serving after the refused GET.
        #expect(try proxy.admin("GET", "/ready").status == 200)
        #expect(try proxy.fetch("GET", "/service").status == 200)

        let stats = try proxy.stats()
        #expect(stats["http.ingress_http.downstream_rq_total"] == "4")
        #expect(stats["http.ingress_http.downstream_rq_2xx"] == "4")
        #expect(stats["cluster.backend.upstream_rq_total"] == "4")

        let prometheus = try proxy.admin("GET", "/stats/prometheus")
        #expect(prometheus.status == 200)
        let lines = prometheus.bodyString.split(separator: "\n").map(String.init)
        #expect(lines.contains(#"envoy_cluster_upstream_rq_total{envoy_cluster_name="backend"} 4"#))
        #expect(lines.contains("# TYPE envoy_cluster_upstream_rq_total counter"))

        let info = try proxy.admin("GET", "/server_info")
        #expect(info.status == 200)
        let infoJSON = try JSONSerialization.jsonObject(with: Data(info.body)) as? [String: Any]
        #expect(infoJSON?["state"] as? String == "LIVE")

        let dump = try proxy.admin("GET", "/config_dump")
        #expect(dump.status == 200)
        #expect(try JSONSerialization.jsonObject(with: Data(dump.body)) is [String: Any])
        #expect(dump.bodyString.contains("\"backend\""))
    }

    // MARK: 17. Graceful drain

    @Test func drainFinishesInFlightRequestAndRefusesNewConnections() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port), drainTime: .seconds(4))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        try client.send(RawClient.request("GET", "/slow?ms=1000"))
        #expect(eventually { backend.requestCount == 1 })
        usleep(200_000)
        let drainStart = Date()
        proxy.server.drainAndStop()

        // New connections: refused once the listener is closed; one accepted just before must not be served.
        var newConnectionTurnedAway = false
        let deadline = Date().addingTimeInterval(0.7)
        while !newConnectionTurnedAway && Date() < deadline {
            do {
                let late = try RawClient(port: proxy.port, timeout: 0.3)
                try? late.send(RawClient.request("GET", "/service"))
                if (try? late.readResponse()) == nil { newConnectionTurnedAway = true }
                late.close()
            } catch let error as RawClientError where error.isConnectFailure {
                newConnectionTurnedAway = true
            }
            if !newConnectionTurnedAway { usleep(20_000) }
        }
        #expect(newConnectionTurnedAway, "a connection made after the drain began was served")

        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.bodyString == "Hello from service!")
        #expect(response.header("connection") == "close")
        #expect(client.waitForClose())

        try proxy.server.waitUntilStopped()
        proxy.markStopped()
        let took = Date().timeIntervalSince(drainStart)
        // Stopped because the last request ended, not because the 4 s drain time ran out.
        #expect(took < 3, "stopping took \(took)s")
        #expect(backend.requestCount == 1)
    }

    @Test func drainClosesIdleKeepAliveConnectionsAtOnce() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port), drainTime: .seconds(4))
        defer { proxy.shutdown() }

        let idle = try proxy.client()
        try idle.send(RawClient.request("GET", "/service"))
        #expect(try idle.readResponse().status == 200)

        let drainStart = Date()
        proxy.server.drainAndStop()
        idle.setReceiveTimeout(2)
        #expect(idle.waitForClose(), "an idle keep-alive connection survived the drain")
        try proxy.server.waitUntilStopped()
        proxy.markStopped()
        let took = Date().timeIntervalSince(drainStart)
        #expect(took < 2, "stopping took \(took)s")
    }

    // MARK: 18. Direct responses and redirects

    @Test func directResponseAndRedirect() throws {
        let backend = try TestBackend()
        defer { backend.stop() }
        let proxy = try ProxyHarness(yaml: ProxyConfig.single(port: backend.port, routes: [
            #"{match: {path: "/direct"}, direct_response: {status: 200, body: {inline_string: "direct hello"}}}"#,
            #"{match: {path: "/old"}, redirect: {path_redirect: "/new"}}"#,
            ProxyConfig.catchAll,
        ]))
        defer { proxy.shutdown() }

        let client = try proxy.client()
        try client.send(RawClient.request("GET", "/direct"))
        let direct = try client.readResponse()
        #expect(direct.status == 200)
        #expect(direct.bodyString == "direct hello")

        try client.send(RawClient.request("GET", "/old", host: "shop.example.com"))
        let redirect = try client.readResponse()
        #expect(redirect.status == 301)
        #expect(redirect.header("location") == "http://shop.example.com/new")
        #expect(redirect.body.isEmpty)

        #expect(backend.requestCount == 0)
        #expect(try proxy.stat("http.ingress_http.rq_direct_response") == 1)
    }
}
