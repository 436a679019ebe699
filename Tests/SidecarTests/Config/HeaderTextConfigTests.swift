import Testing

@testable import Sidecar
@testable import SidecarCore

/// Config text that becomes header or request-line bytes is checked at load: the outbound pipelines do not
/// re-validate headers, so a CR or LF from the config must never reach the wire.
@Suite struct HeaderTextConfigTests {
    static let valid = ConfigDecodingTests.valid
    static let route = #"route: { cluster: service, timeout: 0.25s }"#

    /// The route with `extra` as a sibling key of `route` (same indentation).
    static func routeWith(_ extra: String) -> String {
        "route: { cluster: service }\n                " + extra
    }

    static func error(_ old: String, _ new: String) -> ConfigError? {
        let text = ConfigDecodingTests.variant(old, new)
        do {
            _ = try Bootstrap.load(text: text)
            return nil
        } catch let e as ConfigError {
            return e
        } catch {
            return nil
        }
    }

    @Test func aHeaderValueWithALineBreakIsRefusedWithItsPath() throws {
        let e = try #require(Self.error(
            Self.route,
            Self.routeWith(#"request_headers_to_add: [{header: {key: x-a, value: "ok\r\nx-injected: 1"}}]"#)))
        #expect(e.message.contains("carriage return"), "\(e)")
        #expect(e.path.hasSuffix("request_headers_to_add[0].header.value"), "\(e.path)")
    }

    @Test func aHeaderNameThatIsNotATokenIsRefused() throws {
        let e = try #require(Self.error(
            Self.route, Self.routeWith(#"response_headers_to_add: [{header: {key: "x a", value: v}}]"#)))
        #expect(e.message.contains("not allowed in an HTTP header name"), "\(e)")
    }

    @Test func rewritesAndRedirectsMayNotSplitTheRequestLineOrLocation() throws {
        #expect(Self.error(Self.route, #"route: { cluster: service, prefix_rewrite: "/a\n" }"#) != nil)
        #expect(Self.error(Self.route, #"route: { cluster: service, host_rewrite_literal: "h\r" }"#) != nil)
        #expect(Self.error(Self.route, #"redirect: { host_redirect: "h\n" }"#) != nil)
        #expect(Self.error(Self.route, #"redirect: { path_redirect: "/p\u0000" }"#) != nil)
    }

    @Test func pathRewritesMayNotCarryASpace() throws {
        let e = try #require(Self.error(Self.route, #"route: { cluster: service, prefix_rewrite: "/a b" }"#))
        #expect(e.message.contains("request path"), "\(e)")
    }

    @Test func theHTTP10DefaultHostAndEndpointHostnamesAreHeaderValues() throws {
        // The first becomes the request's authority, the second `host` under auto_host_rewrite.
        let http10 = try #require(Self.error(
            "stat_prefix: ingress_http",
            "stat_prefix: ingress_http\n          http_protocol_options: {accept_http_10: true, default_host_for_http_10: \"a\\nb\"}"))
        #expect(http10.path.hasSuffix("default_host_for_http_10"), "\(http10)")
        let hostname = try #require(Self.error("- endpoint:", "- endpoint:\n            hostname: \"h\\rx\""))
        #expect(hostname.path.hasSuffix("endpoint.hostname"), "\(hostname)")
    }

    @Test func aDecompressorNameIsPartOfHeaderNamesSoItMustBeAToken() throws {
        let filter = #"- {name: d, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.decompressor.v3.Decompressor, decompressor_library: {name: "a b", typed_config: {"@type": type.googleapis.com/envoy.extensions.compression.gzip.decompressor.v3.Gzip}}}}"#
        let e = try #require(Self.error(
            "- name: envoy.filters.http.router", filter + "\n          - name: envoy.filters.http.router"))
        #expect(e.message.contains("not allowed in an HTTP header name"), "\(e)")
    }

    @Test func theServerNameIsAHeaderValue() throws {
        let e = try #require(Self.error("stat_prefix: ingress_http", "stat_prefix: ingress_http\n          server_name: \"a\\nb\""))
        #expect(e.message.contains("line feed"), "\(e)")
    }

    @Test func ordinaryValuesStillLoad() throws {
        #expect(Self.error(
            Self.route,
            #"route: { cluster: service, prefix_rewrite: "/v2/" }"# + "\n                "
                + #"request_headers_to_add: [{header: {key: "x-a!#$%&'*+-.^_`|~", value: "a, b; c=\"d\""}}]"#) == nil)
    }
}

/// `--mode validate` lists every unsupported field of a mapping and the errors beside it in one run.
@Suite struct UnsupportedFieldsListedTogetherTests {
    static func errors(_ text: String) -> [ConfigError] {
        do {
            _ = try Bootstrap.load(text: text)
            return []
        } catch let e as ConfigError {
            return e.all
        } catch {
            return []
        }
    }

    @Test func unsupportedFieldsInOneMappingAndBelowItAreAllReported() {
        var text = ConfigDecodingTests.variant(
            "stat_prefix: ingress_http", "stat_prefix: ingress_http\n          request_id_extension: {}\n          local_reply_config: {}")
        text = text.replacingOccurrences(
            of: "route: { cluster: service, timeout: 0.25s }",
            with: "route: { cluster: service, timeout: 0.25s }\n                tracing: { random_sampling: { numerator: 1 } }")
        let paths = Self.errors(text).map(\.path)
        #expect(paths.contains { $0.hasSuffix("typed_config.request_id_extension") }, "\(paths)")
        #expect(paths.contains { $0.hasSuffix("typed_config.local_reply_config") }, "\(paths)")
        #expect(paths.contains { $0.hasSuffix("routes[0].tracing") }, "\(paths)")
        #expect(paths.count == 3, "\(paths)")
    }

    @Test func aRequiredChoiceLeftOutWithAnUnsupportedFieldIsNotReportedAsMissing() {
        let text = ConfigDecodingTests.variant(
            "route: { cluster: service, timeout: 0.25s }", "route: { cluster_specifier_plugin: { extension: {} } }")
        let errors = Self.errors(text)
        #expect(errors.count == 1, "\(errors)")
        #expect(errors.first?.path.hasSuffix("route.cluster_specifier_plugin") ?? false, "\(errors)")
    }
}
