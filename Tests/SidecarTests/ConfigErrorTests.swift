import Foundation
import Testing
import Yams

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// Config errors name an unknown field before anything else about its mapping, suggest the field that was meant,
/// and one load (or `sidecar --mode validate`) reports every error in the file, sorted by line.
@Suite struct ConfigErrorTests {
    static let listenerPath = "static_resources.listeners[0]"
    static let hcmPath = ConfigDecodingTests.hcmPath
    static let routePath = ConfigDecodingTests.routePath
    static let clusterPath = "static_resources.clusters[0]"

    static func variant(_ old: String, _ new: String) -> String { ConfigDecodingTests.variant(old, new) }
    static func line(of needle: String, in text: String) -> Int { ConfigDecodingTests.line(of: needle, in: text) }

    static func loadError(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> ConfigError? {
        #expect(throws: ConfigError.self, sourceLocation: sourceLocation) { try Bootstrap.load(text: text) }
    }

    // MARK: An unknown field is named first, with the field that was meant

    @Test func routeMatchTypoIsNamedInsteadOfTheMissingPathRule() {
        let text = Self.variant("match: { prefix: \"/\" }", "match: { prefx: \"/\" }")
        let e = Self.loadError(text)
        #expect(e?.path == Self.routePath + ".match.prefx")
        #expect(e?.line == Self.line(of: "prefx", in: text))
        #expect(e?.message == "unknown field 'prefx'; did you mean 'prefix'?")
        #expect(e?.others == [])
    }

    @Test func clusterTypoIsNamedWithTheFieldMeant() {
        let text = Self.variant("connect_timeout: {", "conect_timeout: {")
        let e = Self.loadError(text)
        #expect(e?.path == Self.clusterPath + ".conect_timeout")
        #expect(e?.line == Self.line(of: "conect_timeout", in: text))
        #expect(e?.message == "unknown field 'conect_timeout'; did you mean 'connect_timeout'?")
    }

    /// The cluster's `lb_policy` is read (and rejected) before decoding gets to the end of the mapping, where
    /// unconsumed fields used to be found; the typo is still what is reported.
    @Test func clusterTypoComesBeforeAnotherErrorInTheSameCluster() {
        let text = Self.variant(
            "connect_timeout: { seconds: 1, nanos: 500000000 }\n    type: STATIC\n",
            "conect_timeout: { seconds: 1, nanos: 500000000 }\n    type: STATIC\n    lb_policy: ROUND_ROBBIN\n")
        let e = Self.loadError(text)
        #expect(e?.path == Self.clusterPath + ".conect_timeout")
        #expect(e?.message == "unknown field 'conect_timeout'; did you mean 'connect_timeout'?")
        #expect(e?.others == [])
    }

    @Test func listenerTypoIsNamedInsteadOfTheMissingAddress() {
        let text = Self.variant("    address:\n      socket_address: { address: 127.0.0.1, port_value: 10000 }",
                                "    adress:\n      socket_address: { address: 127.0.0.1, port_value: 10000 }")
        let e = Self.loadError(text)
        #expect(e?.path == Self.listenerPath + ".adress")
        #expect(e?.line == 4)
        #expect(e?.message == "unknown field 'adress'; did you mean 'address'?")
    }

    @Test func listenerTypoOfAList() {
        let text = Self.variant("    filter_chains:\n", "    filter_chain:\n")
        let e = Self.loadError(text)
        #expect(e?.path == Self.listenerPath + ".filter_chain")
        #expect(e?.message == "unknown field 'filter_chain'; did you mean 'filter_chains'?")
    }

    @Test func typoInTheConnectionManagerIsFoundByItsType() {
        let text = Self.variant("stat_prefix: ingress_http", "stat_prefx: ingress_http")
        let e = Self.loadError(text)
        #expect(e?.path == Self.hcmPath + ".stat_prefx")
        #expect(e?.message == "unknown field 'stat_prefx'; did you mean 'stat_prefix'?")
    }

    @Test func typoInARouteAction() {
        let text = Self.variant("route: { cluster: service,", "route: { clustr: service,")
        let e = Self.loadError(text)
        #expect(e?.path == Self.routePath + ".route.clustr")
        #expect(e?.message == "unknown field 'clustr'; did you mean 'cluster'?")
    }

    @Test func typoDeepInAClusterEndpoint() {
        let text = Self.variant("port_value: 8080", "port_valu: 8080")
        let e = Self.loadError(text)
        #expect(e?.path == Self.clusterPath + ".load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_valu")
        #expect(e?.line == Self.line(of: "port_valu:", in: text))
        #expect(e?.message == "unknown field 'port_valu'; did you mean 'port_value'?")
    }

    @Test func typoInACamelCaseJSONField() {
        let text = Self.variant("connect_timeout: {", "connectTimout: {")
        let e = Self.loadError(text)
        #expect(e?.message == "unknown field 'connect_timout'; did you mean 'connect_timeout'?")
    }

    @Test func unknownFieldWithNothingCloseHasNoSuggestion() {
        let text = Self.variant("  - name: service\n", "  - colour: blue\n")
        let e = Self.loadError(text)
        #expect(e?.path == Self.clusterPath + ".colour")
        #expect(e?.message == "unknown field 'colour'")
    }

    /// Fields of the message that decoding has not reached yet are not mistaken for unknown ones.
    @Test func validFieldsNotReadYetAreNotUnknown() {
        let text = Self.variant(
            "                route: { cluster: service, timeout: 0.25s }\n",
            "                metadata: { filter_metadata: { a: { b: c } } }\n"
                + "                response_headers_to_add: [{ header: { key: x-a, value: b } }]\n")
        let e = Self.loadError(text)
        #expect(e?.path == Self.routePath)
        #expect(e?.message == "one of route, redirect, direct_response is required")
    }

    /// A value error in a mapping whose own fields are all known stays as it was.
    @Test func errorsWithoutAnUnknownFieldAreUnchanged() {
        let text = Self.variant("port_value: 8080", "port_value: eighty")
        let e = Self.loadError(text)
        #expect(e?.message.contains("expected an integer") == true)
        #expect(e?.others == [])
    }

    /// A route file (RouteConfiguration.load) and an SDS file get the same treatment.
    @Test func routeConfigurationFileTypo() {
        let error = #expect(throws: ConfigError.self) {
            try RouteConfiguration.load(
                text: """
                    virtual_hosts:
                    - name: vh
                      domain: ["*"]
                    """)
        }
        #expect(error?.path == "virtual_hosts[0].domain")
        #expect(error?.line == 3)
        #expect(error?.message == "unknown field 'domain'; did you mean 'domains'?")
    }

    @Test func sdsFileTypo() {
        let error = #expect(throws: ConfigError.self) {
            try SecretFile.parse(
                """
                resources:
                - "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
                  name: cert
                  tls_certificat: { certificate_chain: { filename: /c.pem }, private_key: { filename: /k.pem } }
                """, name: "cert", path: "sds.yaml")
        }
        #expect(error?.path == "resources[0].tls_certificat")
        #expect(error?.line == 4)
        #expect(error?.message == "unknown field 'tls_certificat'; did you mean 'tls_certificate'?")
    }

    @Test func suggestions() {
        let route = ["prefix", "path", "safe_regex", "path_separated_prefix", "headers", "grpc"]
        #expect(ConfigFields.closest(to: "prefx", among: route) == "prefix")
        #expect(ConfigFields.closest(to: "perfix", among: route) == "prefix")
        #expect(ConfigFields.closest(to: "header", among: route) == "headers")
        #expect(ConfigFields.closest(to: "pth", among: route) == "path")
        #expect(ConfigFields.closest(to: "colour", among: route) == nil)
        #expect(ConfigFields.closest(to: "lb-policy", among: ["lb_policy"]) == "lb_policy")
        #expect(ConfigFields.closest(to: "connect_timout", among: ["connect_timeout", "timeout"]) == "connect_timeout")
        #expect(ConfigFields.closest(to: "x", among: ["y"]) == "y")
        #expect(ConfigFields.closest(to: "xy", among: ["ab"]) == nil)
    }

    // MARK: Every error in one load

    /// Three errors in three independent places: a route, another route and a cluster.
    static let threeErrors = """
        static_resources:
          listeners:
          - name: ingress
            address:
              socket_address: { address: 127.0.0.1, port_value: 10000 }
            filter_chains:
            - filters:
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                  stat_prefix: ingress_http
                  http_filters:
                  - name: envoy.filters.http.router
                  route_config:
                    virtual_hosts:
                    - name: backend
                      domains: ["*"]
                      routes:
                      - match: { prefx: "/api" }
                        route: { cluster: service }
                      - match: { prefix: "/" }
                        route: { cluster: nowhere }
          clusters:
          - name: service
            conect_timeout: 1s
            type: STATIC
            load_assignment:
              cluster_name: service
              endpoints:
              - lb_endpoints:
                - endpoint:
                    address:
                      socket_address: { address: 127.0.0.1, port_value: 8080 }
        """

    @Test func everyErrorIsReportedSortedByLine() {
        let e = Self.loadError(Self.threeErrors)
        let routes = Self.hcmPath + ".route_config.virtual_hosts[0].routes"
        #expect(e?.all.map(\.path) == [
            routes + "[0].match.prefx", routes + "[1].route.cluster", Self.clusterPath + ".conect_timeout",
        ])
        #expect(e?.all.map(\.line) == [19, 22, 25])
        #expect(e?.all.map(\.message) == [
            "unknown field 'prefx'; did you mean 'prefix'?",
            "route refers to unknown cluster 'nowhere'",
            "unknown field 'conect_timeout'; did you mean 'connect_timeout'?",
        ])
        // The first error reads as a single one always did; the description lists them all.
        #expect(e?.path == routes + "[0].match.prefx")
        #expect(e?.line == 19)
        #expect(e?.description.split(separator: "\n").count == 3)
        #expect(e?.description.hasPrefix(routes + "[0].match.prefx (line 19): unknown field 'prefx'") == true)
    }

    /// A cluster with an error of its own still counts for the routes that name it: no error per route.
    @Test func aBrokenClusterDoesNotMakeItsRoutesErrorsToo() {
        let text = Self.variant("    type: STATIC\n", "    type: STATIK\n")
        let e = Self.loadError(text)
        #expect(e?.all.count == 1)
        #expect(e?.path == Self.clusterPath + ".type")
    }

    @Test func errorsInSeveralListenersAndClusters() {
        let text = """
            static_resources:
              listeners:
              - name: a
                address: { socket_address: { address: 127.0.0.1, port_value: 70000 } }
                filter_chains: [{ filters: [{ name: t, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: a, cluster: c1 } }] }]
              - name: b
                address: { socket_address: { address: 127.0.0.1, port_value: 10001 } }
                filter_chains: [{ filters: [{ name: t, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefx: b, cluster: c1 } }] }]
              - name: c
                address: { socket_address: { address: 127.0.0.1, port_value: 10002 } }
                filter_chains: [{ filters: [{ name: t, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: c, cluster: c1 } }] }]
              clusters:
              - { name: c1, connect_timeout: 1s }
              - { name: c2, connect_timeout: 0s }
              - { name: c3, lb_polcy: RANDOM }
            """
        let e = Self.loadError(text)
        #expect(e?.all.map(\.line) == [4, 8, 14, 15])
        #expect(e?.all[0].message.contains("out of range") == true)
        #expect(e?.all[1].message == "unknown field 'stat_prefx'; did you mean 'stat_prefix'?")
        #expect(e?.all[2].path == "static_resources.clusters[1].connect_timeout")
        #expect(e?.all[3].message == "unknown field 'lb_polcy'; did you mean 'lb_policy'?")
    }

    /// Several unknown fields in one mapping are all named.
    @Test func everyUnknownFieldOfAMapping() {
        let text = Self.variant("    type: STATIC\n", "    tpye: STATIC\n    colour: blue\n")
        let e = Self.loadError(text)
        #expect(e?.all.map(\.message) == ["unknown field 'tpye'; did you mean 'type'?", "unknown field 'colour'"])
    }

    /// Errors that are not in a listener, cluster, virtual host or route end the search; those found are kept.
    @Test func anErrorOutsideTheListsEndsTheSearch() {
        let text = "admin: { adress: x }\n" + ConfigDecodingTests.valid
        let e = Self.loadError(text)
        #expect(e?.path == "admin.adress")
        #expect(e?.message == "unknown field 'adress'; did you mean 'address'?")
    }

    // MARK: The field lists

    /// Every field name a decoder asks for is in `ConfigFields`, so that a field added to a decoder is not later
    /// called unknown by mistake.
    @Test func everyFieldADecoderReadsIsListed() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources").standardized
        let files = ["SidecarCore", "SidecarUpstream", "Sidecar"].flatMap { target in
            FileManager.default.enumerator(at: sources.appendingPathComponent(target), includingPropertiesForKeys: nil)?
                .compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" } ?? []
        }
        #expect(files.count > 20)
        let call = try Regex(#"\.(?:optional|required|list|has|oneOf|unsupported)\(\s*(\[[^\]]*\]|"[^"]*")"#)
        let namedList = try Regex(#"let (\w+) = (\[[^\]]*\])"#)
        let listArgument = try Regex(#"oneOf\((\w+)"#)
        let keyPathTable = try Regex(#"\(\"([a-z0-9_]+)\", \\\."#)
        let literal = try Regex(#""([^"]*)""#)
        var missing: [String] = []
        var checked = 0
        for file in files {
            let text = try String(contentsOf: file, encoding: .utf8)
            var names: [Substring] = []
            for match in text.matches(of: call) {
                names += match.output[1].substring.map { $0.matches(of: literal).map { $0.output[1].substring! } } ?? []
            }
            let lists = Set(text.matches(of: listArgument).compactMap { $0.output[1].substring.map(String.init) })
            for match in text.matches(of: namedList) where lists.contains(String(match.output[1].substring!)) {
                names += match.output[2].substring!.matches(of: literal).map { $0.output[1].substring! }
            }
            names += text.matches(of: keyPathTable).map { $0.output[1].substring! }
            checked += names.count
            for name in names where !ConfigFields.allNames.contains(String(name)) {
                missing.append("\(file.lastPathComponent): \(name)")
            }
        }
        #expect(checked > 500)
        #expect(missing == [])
    }

    /// Decoding real configs, every mapping's fields fit a message in `ConfigFields`.
    @Test(arguments: ["envoy.yaml", "resilience/retry.yaml", "resilience/circuit-breakers.yaml", "resilience/weighted.yaml"])
    func examplesFitTheFieldLists(file: String) throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../examples/\(file)").standardized
        try Self.expectNoFieldGaps(try String(contentsOf: url, encoding: .utf8))
    }

    @Test func builtInConfigsFitTheFieldLists() throws {
        try Self.expectNoFieldGaps(DefaultConfig.yaml)
        for mode in PodDefaults.CaptureMode.allCases {
            try Self.expectNoFieldGaps(PodDefaults.yaml(captureMode: mode))
        }
        try Self.expectNoFieldGaps(ConfigDecodingTests.valid)
        try Self.expectNoFieldGaps(Self.kitchenSink)
    }

    static func expectNoFieldGaps(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let root = try #require(try ConfigDocument.parse(text))
        let session = ConfigSession()
        session.recordsFieldGaps = true
        _ = try Bootstrap.decode(ConfigValue(node: root, path: "", session: session))
        #expect(session.fieldGaps == [], sourceLocation: sourceLocation)
    }

    /// Many of the messages Pilotfish reads, in one config.
    static let kitchenSink = """
        admin: { address: { socket_address: { address: 127.0.0.1, port_value: 9901 } } }
        node: { id: n, cluster: c }
        static_resources:
          listeners:
          - name: ingress
            address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
            listener_filters:
            - name: envoy.filters.listener.tls_inspector
              typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }
            - name: envoy.filters.listener.original_dst
              typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst }
            filter_chains:
            - filter_chain_match: { destination_port: 10000, prefix_ranges: [{ address_prefix: 10.0.0.0, prefix_len: 8 }] }
              filters:
              - name: envoy.filters.network.rbac
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC
                  stat_prefix: net
                  rules:
                    action: ALLOW
                    policies:
                      any: { permissions: [{ destination_port_range: { start: 1, end: 2 } }, { any: true }], principals: [{ remote_ip: { address_prefix: 10.0.0.0, prefix_len: 8 } }] }
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                  stat_prefix: ingress_http
                  codec_type: AUTO
                  stream_idle_timeout: 10s
                  http_protocol_options: { accept_http_10: true }
                  http_filters:
                  - name: envoy.filters.http.rbac
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
                      rules:
                        policies:
                          p:
                            permissions: [{ and_rules: { rules: [{ header: { name: x, string_match: { exact: y } } }, { url_path: { path: { prefix: / } } }] } }]
                            principals: [{ or_ids: { ids: [{ authenticated: { principal_name: { exact: spiffe://a } } }, { any: true }] } }]
                  - name: envoy.filters.http.router
                    typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
                  route_config:
                    name: r
                    request_headers_to_add: [{ header: { key: x-a, value: b }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }]
                    virtual_hosts:
                    - name: backend
                      domains: ["*"]
                      retry_policy: { retry_on: 5xx, num_retries: 2, retry_back_off: { base_interval: 0.1s, max_interval: 1s } }
                      routes:
                      - match:
                          prefix: /api
                          headers: [{ name: x, range_match: { start: 1, end: 5 } }]
                          query_parameters: [{ name: q, string_match: { safe_regex: { regex: "a.*" } } }]
                          runtime_fraction: { default_value: { numerator: 50, denominator: HUNDRED } }
                        metadata: { filter_metadata: { a: { b: c } } }
                        route:
                          weighted_clusters: { clusters: [{ name: service, weight: 1 }, { name: other, weight: 1 }] }
                          regex_rewrite: { pattern: { regex: "^/api" }, substitution: / }
                          hash_policy: [{ header: { header_name: x } }, { connection_properties: { source_ip: true } }]
                          retry_policy:
                            retry_on: connect-failure
                            retry_host_predicate: [{ name: envoy.retry_host_predicates.previous_hosts }]
                            retriable_headers: [{ name: x, present_match: true }]
                      - match: { path: /redirect }
                        redirect: { https_redirect: true, regex_rewrite: { pattern: { regex: "a" }, substitution: b } }
                      - match: { safe_regex: { regex: "/d.*" }, grpc: {} }
                        direct_response: { status: 200, body: { inline_string: ok } }
              transport_socket:
                name: envoy.transport_sockets.tls
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
                  common_tls_context:
                    tls_params: { tls_minimum_protocol_version: TLSv1_2 }
                    tls_certificate_sds_secret_configs: [{ name: cert, sds_config: { path_config_source: { path: /tmp/c.yaml, watched_directory: { path: /tmp } } } }]
                    combined_validation_context:
                      default_validation_context: { match_typed_subject_alt_names: [{ san_type: URI, matcher: { prefix: spiffe:// } }] }
                      validation_context_sds_secret_config: { name: ca, sds_config: { path: /tmp/ca.yaml } }
          clusters:
          - name: service
            connect_timeout: 1s
            type: STRICT_DNS
            lb_policy: RING_HASH
            ring_hash_lb_config: { minimum_ring_size: 16, maximum_ring_size: 1024 }
            common_lb_config: { healthy_panic_threshold: { value: 10 } }
            upstream_bind_config: { source_address: { address: 127.0.0.1, port_value: 0 } }
            health_checks:
            - timeout: 1s
              interval: 5s
              unhealthy_threshold: 2
              healthy_threshold: 1
              http_health_check: { path: /healthz, expected_statuses: [{ start: 200, end: 300 }] }
            outlier_detection: { consecutive_5xx: 3, interval: 1s, base_ejection_time: 30s, max_ejection_percent: 50 }
            circuit_breakers: { thresholds: [{ priority: HIGH, max_connections: 10, retry_budget: { budget_percent: { value: 20 } } }] }
            typed_extension_protocol_options:
              envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
                "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
                explicit_http_config: { http_protocol_options: {} }
                common_http_protocol_options: { idle_timeout: 60s, max_requests_per_connection: 100 }
            load_assignment:
              cluster_name: service
              endpoints:
              - lb_endpoints:
                - endpoint: { address: { socket_address: { address: localhost, port_value: 8080 } } }
                  load_balancing_weight: 2
            transport_socket:
              name: envoy.transport_sockets.tls
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
                sni: service
                common_tls_context:
                  tls_certificates: [{ certificate_chain: { filename: /tmp/c.pem }, private_key: { filename: /tmp/k.pem } }]
                  validation_context: { trusted_ca: { filename: /tmp/ca.pem } }
          - name: other
            connect_timeout: 1s
            lb_policy: LEAST_REQUEST
            least_request_lb_config: { choice_count: 3, active_request_bias: { default_value: 1.5, runtime_key: k } }
            health_checks:
            - { timeout: 1s, interval: 5s, unhealthy_threshold: 2, healthy_threshold: 1, tcp_health_check: { send: { text: "0102" }, receive: [{ binary: AQI= }] } }
            load_assignment:
              cluster_name: other
              endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8081 } } } }] }]
        """

    // MARK: sidecar --mode validate

    /// The built `sidecar`, next to this test binary (or SIDECAR_BIN).
    static var sidecarBinary: String? {
        var candidates: [String] = []
        if let bin = ProcessInfo.processInfo.environment["SIDECAR_BIN"] { candidates.append(bin) }
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = here.deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(directory.appendingPathComponent("sidecar").path)
            directory = directory.deletingLastPathComponent()
        }
        candidates.append(
            URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                .appendingPathComponent("../../.build/debug/sidecar").standardized.path)
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func runSidecar(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(sidecarBinary))
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }

    @Test(.enabled(if: sidecarBinary != nil, "needs the built sidecar binary"))
    func validateListsEveryErrorAndFails() async throws {
        try await withTemporaryDirectory { dir in
            let file = dir + "/bad.yaml"
            try Self.threeErrors.write(toFile: file, atomically: true, encoding: .utf8)
            let run = try Self.runSidecar(["--mode", "validate", "-c", file])
            #expect(run.status == 1)
            let errors = run.stderr.split(separator: "\n").filter { $0.hasPrefix("error: invalid config \(file): ") }
            #expect(errors.count == 3)
            #expect(errors.map { $0.contains("(line 19)") } == [true, false, false])
            #expect(errors.map { $0.contains("(line 22)") } == [false, true, false])
            #expect(errors.map { $0.contains("(line 25)") } == [false, false, true])
            #expect(errors.first?.hasSuffix("unknown field 'prefx'; did you mean 'prefix'?") == true)
            #expect(run.stderr.contains("3 errors in config \(file)"))
            #expect(!run.stdout.contains("OK"))
        }
    }

    @Test(.enabled(if: sidecarBinary != nil, "needs the built sidecar binary"))
    func validateAcceptsAGoodConfig() async throws {
        try await withTemporaryDirectory { dir in
            let file = dir + "/good.yaml"
            try ConfigDecodingTests.valid.write(toFile: file, atomically: true, encoding: .utf8)
            let run = try Self.runSidecar(["--mode", "validate", "-c", file])
            #expect(run.status == 0)
            #expect(run.stdout.contains("OK"))
            #expect(run.stderr.isEmpty)
        }
    }
}
