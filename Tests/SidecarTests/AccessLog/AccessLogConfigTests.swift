import Foundation
import NIOCore
import NIOHTTP1
import Testing

@testable import Sidecar
@testable import SidecarCore

/// The connection manager's `access_log` entries: what loads, what is refused, and the lines they render.
@Suite struct AccessLogConfigTests {
    static func hcm(_ accessLog: String) throws -> HTTPConnectionManagerConfig {
        let text = ProxyConfig.yaml(clusters: [("backend", 1)], hcmExtra: ["access_log: [\(accessLog)]"])
        let chain = try #require(try Bootstrap.load(text: text).listeners.first?.filterChains.first)
        guard case .httpConnectionManager(let h) = chain.network else {
            throw ConfigError(path: "", line: nil, message: "not an HCM")
        }
        return h
    }

    static func loadError(_ accessLog: String) -> ConfigError? {
        let text = ProxyConfig.yaml(clusters: [("backend", 1)], hcmExtra: ["access_log: [\(accessLog)]"])
        do {
            _ = try Bootstrap.load(text: text)
            return nil
        } catch let e as ConfigError {
            return e
        } catch {
            return nil
        }
    }

    static let file = #""@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"#

    static func context() -> FormatContext {
        var info = StreamInfo()
        info.startTime = StreamStartTime(nanosecondsSinceEpoch: 1_764_979_200_123_000_000,
                                         monotonic: .uptimeNanoseconds(1_000_000_000))
        info.end = .uptimeNanoseconds(1_042_000_000)
        info.responseCode = 201
        info.bytesReceived = 3
        info.bytesSent = 5
        info.protocolName = "HTTP/1.1"
        info.upstreamHost = StreamAddress(ip: "127.0.0.1", port: 8080)
        return FormatContext(
            requestHeaders: HTTPHeaders([("host", "a.example"), ("user-agent", "ua\"1"), ("x-request-id", "rid")]),
            method: "POST", path: "/p?q=1", responseStatus: 201,
            responseHeaders: HTTPHeaders([("x-envoy-upstream-service-time", "7")]), stream: info)
    }

    static func line(_ config: AccessLogConfig) -> String {
        var out = ""
        config.render(context(), into: &out)
        return out
    }

    @Test func fileLoggerWithoutFormatUsesEnvoysDefaultLine() throws {
        let h = try Self.hcm("{name: envoy.access_loggers.file, typed_config: {\(Self.file), path: /tmp/x.log}}")
        let log = try #require(h.accessLogs.first)
        #expect(log.destination == .file(path: "/tmp/x.log"))
        #expect(Self.line(log) == """
            [2025-12-06T00:00:00.123Z] "POST /p?q=1 HTTP/1.1" 201 - 3 5 42 7 "-" "ua"1" "rid" "a.example" \
            "127.0.0.1:8080"\n
            """)
    }

    @Test func stdoutAndStderrLoggersLoadWithTextFormats() throws {
        let h = try Self.hcm("""
            {name: envoy.access_loggers.stdout, typed_config: {"@type": \
            type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog, \
            log_format: {text_format_source: {inline_string: "%RESPONSE_CODE% %REQ(x-nope)%\\n"}}}}, \
            {name: envoy.access_loggers.stderr, typed_config: {"@type": \
            type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog, \
            log_format: {text_format: "%BYTES_SENT% %REQ(x-nope)%|", omit_empty_values: true}}}
            """)
        #expect(h.accessLogs.map(\.destination) == [.stdout, .stderr])
        #expect(Self.line(h.accessLogs[0]) == "201 -\n")
        #expect(Self.line(h.accessLogs[1]) == "5 |")
    }

    /// As Envoy 1.40 prints it: keys sorted, a lone numeric command as a number, a missing one as null.
    @Test func jsonFormatRendersTypedValuesWithSortedKeys() throws {
        let h = try Self.hcm("""
            {name: envoy.access_loggers.file, typed_config: {\(Self.file), path: /tmp/x.log, log_format: {json_format: \
            {code: "%RESPONSE_CODE%", method: "%REQ(:METHOD)%", bytes: "%BYTES_SENT%", mixed: "x %RESPONSE_CODE%", \
            missing: "%REQ(X-NOPE)%", alpha: lit, ua: "%REQ(USER-AGENT)%"}}}}
            """)
        #expect(Self.line(try #require(h.accessLogs.first)) == """
            {"alpha":"lit","bytes":5,"code":201,"method":"POST","missing":null,"mixed":"x 201","ua":"ua\\"1"}\n
            """)
    }

    @Test func jsonOmitEmptyValuesDropsMissingKeys() throws {
        let h = try Self.hcm("""
            {name: envoy.access_loggers.file, typed_config: {\(Self.file), path: /tmp/x.log, log_format: \
            {omit_empty_values: true, json_format: {code: "%RESPONSE_CODE%", missing: "%REQ(X-NOPE)%"}}}}
            """)
        #expect(Self.line(try #require(h.accessLogs.first)) == "{\"code\":201}\n")
    }

    @Test func unsupportedAccessLogFieldsAreNamed() {
        let refused: [(String, String)] = [
            ("{name: f, filter: {header_filter: {header: {name: x}}}, typed_config: {\(Self.file), path: /tmp/x}}",
             "header_filter"),
            ("{name: f, filter: {traceable_filter: {}}, typed_config: {\(Self.file), path: /tmp/x}}", "traceable_filter"),
            ("{name: f, typed_config: {\(Self.file), path: /tmp/x, json_format: {a: b}}}", "json_format"),
            ("{name: f, typed_config: {\(Self.file), path: /tmp/x, typed_json_format: {a: b}}}", "typed_json_format"),
            ("{name: f, typed_config: {\(Self.file), path: /tmp/x, log_format: {text_format: a, formatters: []}}}",
             "formatters"),
            ("{name: f, typed_config: {\(Self.file), path: /tmp/x, log_format: {json_format: {a: {b: c}}}}}",
             "json_format"),
            ("{name: envoy.access_loggers.http_grpc, typed_config: {\"@type\": type.googleapis.com/" +
             "envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig}}", "envoy.access_loggers.http_grpc"),
        ]
        for (entry, name) in refused {
            let e = Self.loadError(entry)
            #expect(e != nil, "accepted: \(entry)")
            let text = "\(e?.path ?? "") \(e?.message ?? "")"
            #expect(text.contains(name), "\(text) does not name \(name)")
        }
    }

    @Test func aFileLoggerNeedsAPath() {
        let e = Self.loadError("{name: f, typed_config: {\(Self.file)}}")
        #expect(e?.message.contains("path") == true || e?.path.contains("path") == true)
    }

    /// A stream's loggers travel to the access log thread as a 64-bit mask: a longer list is refused, not cut.
    @Test func moreThanSixtyFourLoggersInOneListAreRefused() throws {
        let one = "{name: envoy.access_loggers.stdout, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}}"
        #expect(try Self.hcm(Array(repeating: one, count: 64).joined(separator: ", ")).accessLogs.count == 64)
        let e = Self.loadError(Array(repeating: one, count: 65).joined(separator: ", "))
        #expect(e?.message.contains("at most 64 access loggers") == true, "\(String(describing: e))")
    }
}
