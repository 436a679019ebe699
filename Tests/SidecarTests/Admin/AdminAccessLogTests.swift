import Foundation
import Testing
@testable import Sidecar
@testable import SidecarCore

/// `admin.access_log` through the real admin listener: the same loggers, formats and filters as the connection
/// manager's, with what Envoy 1.40 puts in an admin request's line.
struct AdminAccessLogTests {
    static func yaml(accessLog: [String]) -> String {
        ProxyConfig.yaml(routes: [#"{match: {prefix: "/"}, direct_response: {status: 200}}"#], clusters: [])
            .replacingOccurrences(
                of: "admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: 0}}\n",
                with: "admin:\n  address: {socket_address: {address: 127.0.0.1, port_value: 0}}\n"
                    + "  access_log: [\(accessLog.joined(separator: ", "))]\n")
    }

    static let custom = "code=%RESPONSE_CODE% path=%REQ(:PATH)% method=%REQ(:METHOD)% proto=%PROTOCOL% "
        + "remote=%DOWNSTREAM_REMOTE_ADDRESS% local=%DOWNSTREAM_LOCAL_ADDRESS% flags=%RESPONSE_FLAGS% "
        + "rx=%BYTES_RECEIVED% tx=%BYTES_SENT% up=%UPSTREAM_HOST% cluster=%UPSTREAM_CLUSTER% rid=%REQ(X-REQUEST-ID)% "
        + "details=%RESPONSE_CODE_DETAILS% route=%ROUTE_NAME% respdur=%RESPONSE_DURATION%\\n"

    @Test func everyAdminRequestIsLoggedAsEnvoyLogsIt() throws {
        let plain = AccessLogIntegrationTests.temporaryPath("admin-default")
        let custom = AccessLogIntegrationTests.temporaryPath("admin-custom")
        let errors = AccessLogIntegrationTests.temporaryPath("admin-errors")
        defer { for p in [plain, custom, errors] { try? FileManager.default.removeItem(atPath: p) } }
        let fileType = "\"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
        let proxy = try ProxyHarness(yaml: Self.yaml(accessLog: [
            "{name: envoy.access_loggers.file, typed_config: {\(fileType), path: \(plain)}}",
            AccessLogIntegrationTests.fileLog(custom, Self.custom),
            AccessLogIntegrationTests.fileLog(errors, "%RESPONSE_CODE% %REQ(:PATH)%\\n",
                                              filter: "{status_code_filter: {comparison: {op: GE, value: {default_value: 400, runtime_key: k}}}}"),
        ]))
        defer { proxy.shutdown() }

        let ready = try RawClient.fetch(port: proxy.adminPort, "GET", "/ready", host: "127.0.0.1",
                                        headers: ["user-agent: ua1", "x-forwarded-for: 1.2.3.4"])
        #expect(ready.status == 200)
        #expect(try proxy.admin("GET", "/stats?filter=nothing_matches_this").status == 200)
        #expect(try proxy.admin("GET", "/healthcheck/ok").status == 405)
        let modify = try RawClient(port: proxy.adminPort)
        try modify.send(RawClient.request("POST", "/runtime_modify", host: "127.0.0.1", headers: [
            "content-type: application/x-www-form-urlencoded", "content-length: 7", "connection: close",
        ]) + "hello=1")
        #expect(try modify.readResponse().status == 503)
        AccessLogWriter.shared.flush()

        let local = SidecarServer.localAddress
        let a = "127.0.0.1:\(proxy.adminPort)"
        let defaults = AccessLogIntegrationTests.lines(plain)
        let expected = [
            #""GET /ready HTTP/1.1" 200 - 0 5 \d+ - "1\.2\.3\.4,\#(local)" "ua1" "-" "127\.0\.0\.1" "-""#,
            #""GET /stats\?filter=nothing_matches_this HTTP/1.1" 200 - 0 0 \d+ - "\#(local)" "-" "-" "127\.0\.0\.1" "-""#,
            #""GET /healthcheck/ok HTTP/1.1" 405 - 0 38 \d+ - "\#(local)" "-" "-" "127\.0\.0\.1" "-""#,
            #""POST /runtime_modify HTTP/1.1" 503 - 7 24 \d+ - "\#(local)" "-" "-" "127\.0\.0\.1" "-""#,
        ]
        #expect(defaults.count == expected.count, "\(defaults)")
        for (line, pattern) in zip(defaults, expected) {
            let regex = try Regex(#"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "# + pattern + "$")
            #expect(line.wholeMatch(of: regex) != nil, "\(line) !~ \(pattern)")
        }

        let customLines = AccessLogIntegrationTests.lines(custom)
        #expect(customLines.count == 4, "\(customLines)")
        let first = customLines.first ?? ""
        let prefix = "code=200 path=/ready method=GET proto=HTTP/1.1 remote=127.0.0.1:"
        let suffix = " local=\(a) flags=- rx=0 tx=5 up=- cluster=- rid=- details=admin_filter_response route=- respdur=-"
        #expect(first.hasPrefix(prefix) && first.hasSuffix(suffix), "\(first)")
        #expect(AccessLogIntegrationTests.lines(errors) == ["405 /healthcheck/ok", "503 /runtime_modify"])
    }

    @Test func adminAccessLogConfigErrorsAreNamed() {
        let bad = Self.yaml(accessLog: ["{name: envoy.access_loggers.file, typed_config: {\"@type\": "
            + "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog, path: /tmp/x, json_format: {a: b}}}"])
        let error = #expect(throws: ConfigError.self) { try Bootstrap.load(text: bad) }
        #expect(error?.path.hasPrefix("admin.access_log[0]") == true, "\(error?.description ?? "")")
    }
}
