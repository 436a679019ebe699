import Foundation
import SidecarCore

/// A request through a route table, as the connection manager and Envoy's router_check_tool route it: path
/// normalisation first, then virtual host and route matching, weighted clusters, runtime fractions, rewrites,
/// redirects and header mutations (`RouteCheckObservation`).
///
/// The tables are Envoy's router_check configs (../shared/conformance, or `PILOTFISH_FUZZ_ROUTE_CONFIGS`) and
/// `RouteFuzz.ownTable`. The input is:
///   byte 0      which table
///   byte 1      bit 0 normalize_path, bit 1 merge_slashes, bits 2-3 path_with_escaped_slashes_action,
///               bit 4 TLS (x-forwarded-proto https), bit 5 internal (x-envoy-internal)
///   bytes 2-9   the random value (weighted clusters, runtime fractions)
///   the rest    lines: method, authority, path, the runtime key that is on, then `name: value` headers
final class RouteFuzz: @unchecked Sendable {
    static let shared = RouteFuzz()

    let tables: [RouteConfiguration]

    private init() {
        var tables: [RouteConfiguration] = []
        do {
            tables.append(try RouteConfiguration.load(text: Self.ownTable))
        } catch {
            fatalError("RouteFuzz.ownTable does not load: \(error)")
        }
        let directory = ProcessInfo.processInfo.environment["PILOTFISH_FUZZ_ROUTE_CONFIGS"]
            ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                .appendingPathComponent("../../../shared/conformance/envoy-router-check/config").path
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        for name in names where name.hasSuffix(".yaml") {
            guard let text = try? String(contentsOfFile: directory + "/" + name, encoding: .utf8),
                  let table = try? RouteConfiguration.load(text: text) else { continue }
            tables.append(table)
        }
        self.tables = tables
    }

    func run(_ input: UnsafeRawBufferPointer) {
        guard input.count >= 10 else { return }
        let table = tables[Int(input[0]) % tables.count]
        let flags = input[1]
        var random: UInt64 = 0
        for i in 2..<10 { random = random << 8 | UInt64(input[i]) }
        let text = String(decoding: input[10...], as: UTF8.self)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).makeIterator()
        let method = String(lines.next() ?? "GET")
        let authority = String(lines.next() ?? "")
        var path = String(lines.next() ?? "/")
        let runtime = String(lines.next() ?? "")

        let escaped: PathNormalization.EscapedSlashes = [.keep, .reject, .redirect, .forward][Int(flags >> 2) & 3]
        let normalization = PathNormalization(normalizePath: flags & 1 != 0, mergeSlashes: flags & 2 != 0,
                                              escapedSlashes: escaped)
        switch normalization.apply(path) {
        case .continue(let p): path = p
        case .reject: return
        case .redirect(let p): path = p
        }

        var request = RouteCheckInput(authority: authority, path: path, method: method)
        request.randomValue = random
        request.ssl = flags & 16 != 0
        request.isInternal = flags & 32 != 0
        request.runtime = runtime
        while let line = lines.next() {
            guard let colon = line.dropFirst().firstIndex(of: ":") else { continue }
            let name = String(line[..<colon])
            let value = line[line.index(after: colon)...].drop { $0 == " " }
            // As the codecs and the route-check file decoder let them through: a header name is a token (after an
            // optional ':'), a value has no CR, LF or NUL.
            guard isHeaderName(name), !value.utf8.contains(where: { $0 == 0 || $0 == 10 || $0 == 13 }) else { continue }
            request.additionalRequestHeaders.append(RouteCheckHeader(key: name, value: String(value)))
        }
        _ = RouteCheckObservation(config: table, input: request)
    }

    /// Our table: every matcher kind the decoder accepts, rewrites, redirects and header mutations with format
    /// strings, so that inputs reach them without depending on the conformance data.
    static let ownTable = #"""
    name: fuzz
    request_headers_to_add:
    - header: {key: x-table, value: "%REQ(:AUTHORITY)%"}
    virtual_hosts:
    - name: exact
      domains: ["exact.example", "exact.example:8080"]
      require_tls: EXTERNAL_ONLY
      routes:
      - match: {path: "/exact"}
        route: {cluster: exact}
      - match: {prefix: "/", headers: [{name: x-version, string_match: {exact: v2}}]}
        route: {cluster: v2, prefix_rewrite: "/v2/"}
      - match: {prefix: "/"}
        direct_response: {status: 404, body: {inline_string: "no"}}
    - name: wildcard
      domains: ["*.wild.example", "wild.*"]
      routes:
      - match: {safe_regex: {regex: "^/users/([0-9]+)/(.*)$"}}
        route: {cluster: users, regex_rewrite: {pattern: {regex: "^/users/([0-9]+)/(.*)$"}, substitution: "/u/\\2/\\1"}}
      - match: {path_separated_prefix: "/api"}
        route: {cluster: api, host_rewrite_literal: api.internal}
      - match: {prefix: "/old", case_sensitive: false}
        redirect: {prefix_rewrite: "/new", response_code: PERMANENT_REDIRECT, strip_query: true}
      - match: {prefix: "/"}
        redirect: {https_redirect: true, host_redirect: "secure.example", port_redirect: 8443}
    - name: any
      domains: ["*"]
      virtual_clusters:
      - name: writes
        headers: [{name: ":method", string_match: {safe_regex: {regex: "^(POST|PUT|PATCH)$"}}}]
      routes:
      - match:
          prefix: "/q"
          query_parameters:
          - {name: debug, present_match: true}
          - {name: mode, string_match: {prefix: "fast", ignore_case: true}}
        route: {cluster: query}
      - match:
          prefix: "/h"
          headers:
          - {name: x-range, range_match: {start: 10, end: 20}}
          - {name: x-absent, present_match: false}
          - {name: x-suffix, string_match: {suffix: ".svc"}, invert_match: true}
          - {name: x-contains, string_match: {contains: "mid"}, treat_missing_header_as_empty: true}
        route: {cluster: headers}
      - match: {prefix: "/grpc", grpc: {}}
        route: {cluster: grpc, timeout: 3s, max_stream_duration: {grpc_timeout_header_max: 10s}}
      - match: {prefix: "/split", runtime_fraction: {default_value: {numerator: 50, denominator: HUNDRED}, runtime_key: split.on}}
        route:
          weighted_clusters:
            clusters: [{name: a, weight: 1}, {name: b, weight: 3}, {name: c, weight: 0}]
      - match: {prefix: "/"}
        route: {cluster: default, timeout: 0s, retry_policy: {retry_on: "5xx,reset", num_retries: 2}}
        request_headers_to_add:
        - header: {key: x-path, value: "%REQ(:PATH)%"}
          append_action: OVERWRITE_IF_EXISTS_OR_ADD
        request_headers_to_remove: [x-remove]
        response_headers_to_add:
        - header: {key: x-upstream, value: "%UPSTREAM_CLUSTER%"}
    """#
}
