import NIOCore
import NIOHTTP1
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// What each command renders, as Envoy 1.40 renders it in `*_headers_to_add` (observed with the real binary:
/// missing values are empty there, `-` in access logs).
@Suite struct SubstitutionFormatRenderingTests {
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    /// A forwarded GET with a response from 127.0.0.1:8081 of cluster svc.
    static var context: FormatContext {
        var info = StreamInfo()
        // 2026-12-05T21:55:08.190630123Z
        info.startTime = StreamStartTime(nanosecondsSinceEpoch: 1_796_507_708_190_630_123, monotonic: start)
        info.requestEnd = start + .milliseconds(2)
        info.upstreamResponseStart = start + .milliseconds(7)
        info.now = start + .milliseconds(9)
        info.responseCode = 200
        info.bytesReceived = 12
        info.bytesSent = 34
        info.protocolName = "HTTP/1.1"
        info.upstreamHost = StreamAddress(ip: "127.0.0.1", port: 8081)
        info.upstreamCluster = "svc"
        info.upstreamRequestAttemptCount = 2
        info.routeName = "r0"
        info.downstreamRemoteAddress = StreamAddress(ip: "9.9.9.9", port: 0)
        info.downstreamDirectRemoteAddress = StreamAddress(ip: "::1", port: 5555)
        info.downstreamLocalAddress = StreamAddress(ip: "10.0.0.2", port: 80)
        info.requestedServerName = "api.example.com"
        info.hostname = "node-1"
        return FormatContext(
            requestHeaders: HTTPHeaders([
                ("host", "api.example.com"), ("x-a", "hello"), ("x-a", "two"), ("x-request-id", "rid-1"),
            ]),
            method: "GET", path: "/p/q?x=1", scheme: "http", responseStatus: 200,
            responseHeaders: HTTPHeaders([("x-up", "upval")]), responseTrailers: HTTPHeaders([("grpc-status", "0")]),
            stream: info)
    }

    static func render(_ text: String, _ context: FormatContext = context, missing: String = "",
                       options: SubstitutionFormat.Options = []) throws -> String {
        try SubstitutionFormat(parsing: text, missing: missing, options: options).format(context)
    }

    @Test func requestHeadersWithAlternativesTruncationAndPseudoHeaders() throws {
        #expect(try Self.render("%REQ(X-A)%") == "hello")  // the first of repeated values
        #expect(try Self.render("%REQ(x-b?x-a)%") == "hello")
        #expect(try Self.render("%REQ(x-a):2%") == "he")
        #expect(try Self.render("%REQ(x-a):0%") == "")
        #expect(try Self.render("[%REQ(x-nope)%]") == "[]")
        #expect(try Self.render("[%REQ(x-nope)%]", missing: "-") == "[-]")
        #expect(try Self.render("%REQ(:authority)% %REQ(HOST)%") == "api.example.com api.example.com")
        #expect(try Self.render("%REQ(:method)% %REQ(:path)% %REQ(:scheme)%") == "GET /p/q?x=1 http")
        #expect(try Self.render("%REQ_WITHOUT_QUERY(:path)%", options: .requestWithoutQuery) == "/p/q")
        #expect(try Self.render("%STREAM_ID%") == "rid-1")
    }

    @Test func responseHeadersAndTrailers() throws {
        #expect(try Self.render("%RESP(x-up)% %RESP(:status)% %TRAILER(grpc-status)%") == "upval 200 0")
        // Request header mutations have no response: RESP renders as missing, RESPONSE_CODE as 0.
        let request = FormatContext(requestHeaders: HTTPHeaders([("x-a", "1")]))
        #expect(try Self.render("[%RESP(x-up)%][%RESP(:status)%][%RESPONSE_CODE%]", request) == "[][][0]")
    }

    @Test func timesAndDurationsInMilliseconds() throws {
        #expect(try Self.render("%START_TIME%") == "2026-12-05T21:55:08.190Z")
        #expect(try Self.render("%START_TIME(%s.%3f|%6f|%9f|%f)%") == "1796507708.190|190630|190630123|190630123")
        #expect(try Self.render("%DURATION% %REQUEST_DURATION% %RESPONSE_DURATION%") == "9 2 7")
        var info = Self.context.stream
        info.end = Self.start + .milliseconds(11)
        #expect(try Self.render("%DURATION%", FormatContext(stream: info)) == "11")
        // Not reached yet: missing; DURATION counts to now.
        let fresh = FormatContext(stream: {
            var s = StreamInfo()
            s.startTime = StreamStartTime(nanosecondsSinceEpoch: 0, monotonic: Self.start)
            s.now = Self.start
            return s
        }())
        #expect(try Self.render("[%REQUEST_DURATION%][%RESPONSE_DURATION%][%DURATION%]", fresh) == "[][][0]")
    }

    @Test func streamFacts() throws {
        #expect(try Self.render("%RESPONSE_CODE% %BYTES_RECEIVED% %BYTES_SENT% %PROTOCOL%") == "200 12 34 HTTP/1.1")
        #expect(try Self.render("%UPSTREAM_HOST% %UPSTREAM_CLUSTER% %UPSTREAM_REQUEST_ATTEMPT_COUNT%")
            == "127.0.0.1:8081 svc 2")
        #expect(try Self.render("%ROUTE_NAME% %HOSTNAME% %REQUESTED_SERVER_NAME%") == "r0 node-1 api.example.com")
        let empty = FormatContext()
        #expect(try Self.render("[%UPSTREAM_HOST%][%UPSTREAM_CLUSTER%][%ROUTE_NAME%][%UPSTREAM_REQUEST_ATTEMPT_COUNT%]",
                                empty) == "[][][][0]")
    }

    @Test func responseFlagsShortAndLongInTheOrderTheyWereSet() throws {
        #expect(try Self.render("%RESPONSE_FLAGS% %RESPONSE_FLAGS_LONG%") == "- -")
        var info = StreamInfo()
        // Envoy 1.40 on a connect failure whose retries ran out.
        info.responseFlags.insert(.upstreamRetryLimitExceeded)
        info.responseFlags.insert(.upstreamConnectionFailure)
        info.responseFlags.insert(.upstreamRetryLimitExceeded)
        #expect(try Self.render("%RESPONSE_FLAGS% %RESPONSE_FLAGS_LONG%", FormatContext(stream: info))
            == "URX,UF UpstreamRetryLimitExceeded,UpstreamConnectionFailure")
    }

    @Test func addressesWithAndWithoutPort() throws {
        func all(_ prefix: String) throws -> String {
            try Self.render("%\(prefix)_ADDRESS% %\(prefix)_ADDRESS_WITHOUT_PORT% %\(prefix)_PORT%")
        }
        #expect(try all("DOWNSTREAM_REMOTE") == "9.9.9.9:0 9.9.9.9 0")
        #expect(try all("DOWNSTREAM_DIRECT_REMOTE") == "[::1]:5555 ::1 5555")
        #expect(try all("DOWNSTREAM_LOCAL") == "10.0.0.2:80 10.0.0.2 80")
    }

    @Test func renderingAppendsToABuffer() throws {
        var out = "log: "
        try SubstitutionFormat(parsing: "%REQ(x-nope)% %RESPONSE_CODE%", missing: "-").format(Self.context, into: &out)
        #expect(out == "log: - 200")
    }
}
