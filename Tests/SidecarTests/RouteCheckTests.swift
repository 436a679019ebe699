import NIOHTTP1
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// The route-check library (`RouteCheck*`) and the router features it needed: virtual clusters, dynamic
/// metadata matching and `internal_only_headers`.
@Suite struct RouteCheckTests {
    static func results(_ configYAML: String, _ testsYAML: String) throws -> [RouteCheckResult] {
        let runner = RouteCheckRunner(config: try RouteConfiguration.load(text: configYAML))
        return runner.run(try RouteCheckTestFile.load(text: testsYAML))
    }

    // MARK: Failure wording (upstream route_tests.sh, TestRoutesFailures)

    static let ping = """
        virtual_hosts:
        - name: www2
          domains: [www.lyft.com]
          routes:
          - match: { prefix: /ping }
            direct_response: { status: 200, body: { inline_string: "{ 'message': 'Success!' }" } }
            response_headers_to_add:
            - header: { key: x-ping-response, value: "yes" }
          - match: { prefix: / }
            route: { cluster: www2 }
        """

    @Test func headerMatchFailuresAreWordedAsUpstream() throws {
        let results = try Self.results(
            Self.ping,
            """
            tests:
            - test_name: ResponseHeaderMatches Failures
              input: { authority: www.lyft.com, path: /ping, method: GET }
              validate:
                response_header_matches:
                - { name: content-type, string_match: { exact: text/plain }, invert_match: true }
                - { name: content-length, range_match: { start: 100, end: 1000 } }
                - { name: x-ping-response, string_match: { exact: pong } }
                - { name: x-ping-response, present_match: true, invert_match: true }
                - { name: x-pong-response, present_match: true }
            """)
        #expect(results.count == 1)
        #expect(
            results[0].failures == [
                "expected: [content-type: text/plain], actual: NOT [content-type: text/plain], test type: response_header_matches.string_match.exact",
                "actual: [content-length: 25], test type: response_header_matches.range_match",
                "expected: [x-ping-response: pong], actual: [x-ping-response: yes], test type: response_header_matches.string_match.exact",
                "expected: [has(x-ping-response):false], actual: [has(x-ping-response):true], test type: response_header_matches.present_match",
                "expected: [has(x-pong-response):true], actual: [has(x-pong-response):false], test type: response_header_matches.present_match",
            ])
    }

    @Test func valueChecksReportExpectedActualAndType() throws {
        let results = try Self.results(
            Self.ping,
            """
            tests:
            - test_name: wrong
              input: { authority: www.lyft.com, path: /api, method: GET }
              validate: { cluster_name: other, virtual_host_name: www2, path_redirect: "", code_redirect: 301, timeout: 1s }
            - test_name: no route
              input: { authority: nowhere.example, path: /api, method: GET }
              validate: { cluster_name: "", virtual_host_name: "", path_rewrite: "" }
            """)
        #expect(
            results[0].failures == [
                "expected: [other], actual: [www2], test type: cluster_name",
                "expected: [301], actual: [0], test type: code_redirect",
                "expected: [1000], actual: [15000], test type: timeout",
            ])
        #expect(results[1].passed)
    }

    // MARK: Report

    @Test func reportPrintsAsUpstream() throws {
        let config = try RouteConfiguration.load(text: Self.ping)
        let tests = try RouteCheckTestFile.load(
            text: """
                tests:
                - test_name: A
                  input: { authority: www.lyft.com, path: /a, method: GET }
                  validate: { cluster_name: www2 }
                - test_name: B
                  input: { authority: www.lyft.com, path: /b, method: GET }
                  validate: { cluster_name: nope }
                """)
        let runner = RouteCheckRunner(config: config)
        let results = runner.run(tests)
        let coverage = RouteCheckCoverage(config: runner.config, results: results)

        let details = RouteCheckReport(results: results, coverage: coverage, options: .init(details: true))
        #expect(details.exitCode == 1)
        #expect(details.lines.map(\.text) == ["A", "B", "expected: [nope], actual: [www2], test type: cluster_name"])
        #expect(details.lines.map(\.stream) == [.standardOutput, .standardError, .standardError])

        let failuresOnly = RouteCheckReport(results: results, coverage: coverage, options: .init(onlyShowFailures: true))
        #expect(failuresOnly.lines.map(\.text) == ["B", "expected: [nope], actual: [www2], test type: cluster_name"])

        let quiet = RouteCheckReport(results: results, coverage: coverage, options: .init())
        #expect(quiet.lines.isEmpty)
        #expect(quiet.exitCode == 1)

        // Only A: one of the two routes covered.
        let passing = [results[0]]
        let half = RouteCheckCoverage(config: runner.config, results: passing)
        let report = RouteCheckReport(results: passing, coverage: half, options: .init(failUnder: 50))
        #expect(report.lines.map(\.text) == ["Current route coverage: 50%"])
        #expect(report.exitCode == 0)
        let under = RouteCheckReport(results: passing, coverage: half, options: .init(failUnder: 66.5))
        #expect(under.lines.map(\.text) == ["Current route coverage: 50%", "Failed to meet coverage requirement: 66.5%"])
        #expect(under.lines.last?.stream == .standardError)
        #expect(under.exitCode == 1)
        let covall = RouteCheckReport(
            results: passing, coverage: half, options: .init(comprehensiveCoverage: true))
        // The cluster only, of five route fields, on one of two routes: 10 %.
        #expect(covall.lines.map(\.text) == [
            "Missing test for host: www2, route: prefix: \"/ping\"", "Current route coverage: 10%",
        ])
        #expect(RouteCheckReport.number(200.0 / 3) == "66.6667")
    }

    @Test func weightedClustersCountOncePerCluster() throws {
        let config = try RouteConfiguration.load(
            text: """
                virtual_hosts:
                - name: vh
                  domains: ["*"]
                  routes:
                  - match: { prefix: / }
                    route:
                      weighted_clusters:
                        runtime_key_prefix: vh_weights
                        clusters: [{ name: a, weight: 50 }, { name: b, weight: 50 }]
                """)
        let tests = try RouteCheckTestFile.load(
            text: """
                tests:
                - test_name: a
                  input: { authority: x, path: /, method: GET, random_value: 10 }
                  validate: { cluster_name: a }
                - test_name: b
                  input: { authority: x, path: /, method: GET, random_value: 60 }
                  validate: { cluster_name: b }
                """)
        let runner = RouteCheckRunner(config: config)
        let results = runner.run(tests)
        #expect(results.allSatisfy { $0.passed })
        #expect(RouteCheckCoverage(config: runner.config, results: [results[0]]).percent == 50)
        #expect(RouteCheckCoverage(config: runner.config, results: results).percent == 100)
    }

    // MARK: Test file

    @Test func testFileRejectsWhatTheProtoRejects() {
        func error(_ yaml: String) -> String {
            do {
                _ = try RouteCheckTestFile.load(text: yaml)
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        #expect(error("tests: []").contains("at least one test"))
        #expect(error("tests: [{ input: { authority: a, path: /, method: GET }, validate: {} }]").contains("test_name"))
        #expect(error("tests: [{ test_name: t, input: { authority: a, path: /, method: GE }, validate: {} }]")
            .contains("method"))
        #expect(error("tests: [{ test_name: t, input: { authority: a, path: /, method: GET }, validate: { cluster: x } }]")
            .contains("unknown field 'cluster'"))
        #expect(error("tests: [{ test_name: t, input: { authority: a, path: /, method: GET } }]").contains("validate"))
        // Header names are HTTP_HEADER_NAME (a non-ASCII one crashed the tool: found by the routes fuzz target).
        func header(_ key: String, _ value: String = "v") -> String {
            error("tests: [{ test_name: t, input: { authority: a, path: /, method: GET, additional_request_headers: "
                + "[{key: \"\(key)\", value: \"\(value)\"}] }, validate: {} }]")
        }
        #expect(header("\u{C9}-remove").contains("is not an HTTP header name"))
        #expect(header("x y").contains("is not an HTTP header name"))
        #expect(header("x-a", "a\\nb").contains("line feed"))
        #expect(header(":authority") == "no error")
        #expect(header("x-custom") == "no error")
    }

    @Test func testFileTakesCamelCaseAndRuntime() throws {
        let file = try RouteCheckTestFile.load(
            text: """
                {"runtime": {"some.key": 1}, "tests": [{"testName": "t", "input": {"authority": "a", "path": "/",
                 "method": "GET", "randomValue": 7, "additionalRequestHeaders": [{"key": "k", "value": "v"}]},
                 "validate": {"clusterName": "c"}}]}
                """)
        #expect(file.runtimeKeys == ["some.key"])
        #expect(file.tests[0].name == "t")
        #expect(file.tests[0].input.randomValue == 7)
        #expect(file.tests[0].input.additionalRequestHeaders == [RouteCheckHeader(key: "k", value: "v")])
        #expect(file.tests[0].expected.clusterName == "c")
    }

    // MARK: Virtual clusters

    static let virtualClusters = """
        virtual_hosts:
        - name: api
          domains: [api.example.com]
          routes:
          - match: { prefix: /old }
            route: { cluster: api, prefix_rewrite: /users/9 }
          - match: { prefix: / }
            route: { cluster: api }
          virtual_clusters:
          - name: update_user
            headers:
            - { name: ":path", string_match: { safe_regex: { regex: "^/users/\\\\d+$" } } }
            - { name: ":method", string_match: { exact: PUT } }
          - name: any_delete
            headers:
            - { name: ":method", string_match: { exact: DELETE } }
        - name: plain
          domains: ["*"]
          routes:
          - match: { prefix: / }
            route: { cluster: plain }
        """

    @Test func virtualClusterIsTheFirstMatchOrOther() throws {
        let results = try Self.results(
            Self.virtualClusters,
            """
            tests:
            - test_name: first match
              input: { authority: api.example.com, path: /users/12, method: PUT }
              validate: { virtual_cluster_name: update_user }
            - test_name: second
              input: { authority: api.example.com, path: /users/12, method: DELETE }
              validate: { virtual_cluster_name: any_delete }
            - test_name: none matches
              input: { authority: api.example.com, path: /users/12, method: GET }
              validate: { virtual_cluster_name: other }
            - test_name: query is part of the path
              input: { authority: api.example.com, path: /users/12?x=1, method: PUT }
              validate: { virtual_cluster_name: other }
            - test_name: after the rewrite, as upstream's tool asks
              input: { authority: api.example.com, path: /old, method: PUT }
              validate: { virtual_cluster_name: update_user, path_rewrite: /users/9 }
            - test_name: none declared
              input: { authority: www.example.com, path: /users/12, method: PUT }
              validate: { virtual_cluster_name: "" }
            """)
        for r in results { #expect(r.passed, "\(r.name): \(r.failures)") }
    }

    @Test func virtualClusterNeedsAName() {
        #expect(throws: ConfigError.self) {
            try RouteConfiguration.load(
                text: """
                    virtual_hosts:
                    - { name: vh, domains: ["*"], routes: [], virtual_clusters: [{ headers: [] }] }
                    """)
        }
    }

    // MARK: Dynamic metadata

    static func metadata(_ yaml: String) throws -> Metadata {
        let file = try RouteCheckTestFile.load(
            text: """
                tests:
                - test_name: t
                  input:
                    authority: a
                    path: /
                    method: GET
                    dynamic_metadata:
                \(yaml.split(separator: "\n").map { "      " + $0 }.joined(separator: "\n"))
                  validate: {}
                """)
        return RouteCheckDynamicMetadata.apply(file.tests[0].input.dynamicMetadata)
    }

    @Test func dynamicMetadataEntriesMergeOnlyWhenAllowed() throws {
        let kept = try Self.metadata(
            """
            - { metadata_namespace: ns, value: { a: one, b: two } }
            - { metadata_namespace: ns, value: { a: three } }
            """)
        #expect(kept.value(namespace: "ns", key: "a") == .string("one"))
        let merged = try Self.metadata(
            """
            - { metadata_namespace: ns, value: { a: one, b: two } }
            - { metadata_namespace: ns, value: { a: three }, allow_overwrite: true }
            """)
        #expect(merged.value(namespace: "ns", key: "a") == .string("three"))
        #expect(merged.value(namespace: "ns", key: "b") == .string("two"))
    }

    @Test func valueMatchersFollowEnvoy() throws {
        func matcher(_ yaml: String) throws -> MetadataMatcher {
            try MetadataMatcher.decode(ConfigValue(node: try #require(try ConfigDocument.parse(yaml)), path: ""))
        }
        let md = Metadata(filterMetadata: [
            "f": [
                "n": .number(5), "b": .bool(true), "z": .null, "l": .list([.string("x"), .string("y")]),
                "s": .structure(["k": .string("v")]),
            ]
        ])
        #expect(try matcher("{ filter: f, path: [{ key: n }], value: { double_match: { range: { start: 5, end: 6 } } } }").matches(md))
        #expect(try !matcher("{ filter: f, path: [{ key: n }], value: { double_match: { exact: 6 } } }").matches(md))
        #expect(try matcher("{ filter: f, path: [{ key: b }], value: { bool_match: true } }").matches(md))
        #expect(try matcher("{ filter: f, path: [{ key: z }], value: { null_match: {} } }").matches(md))
        #expect(try matcher("{ filter: f, path: [{ key: l }], value: { list_match: { one_of: { string_match: { exact: y } } } } }").matches(md))
        #expect(try matcher("{ filter: f, path: [{ key: s }, { key: k }], value: { string_match: { prefix: v } } }").matches(md))
        #expect(try matcher("{ filter: f, path: [{ key: n }], value: { present_match: true } }").matches(md))
        #expect(try !matcher("{ filter: f, path: [{ key: missing }], value: { present_match: true } }").matches(md))
        #expect(try !matcher("{ filter: g, path: [{ key: n }], value: { present_match: true } }").matches(md))
        #expect(try matcher("{ filter: g, path: [{ key: n }], value: { present_match: true }, invert: true }").matches(md))
        #expect(try matcher("""
            { filter: f, path: [{ key: b }], value: { or_match: { value_matchers: [{ null_match: {} }, { bool_match: true }] } } }
            """).matches(md))
        #expect(throws: ConfigError.self) { try matcher("{ filter: f, path: [], value: { null_match: {} } }") }
    }

    @Test func routesMatchOnDynamicMetadata() throws {
        let config = try RouteConfiguration.load(
            text: """
                virtual_hosts:
                - name: vh
                  domains: ["*"]
                  routes:
                  - match:
                      prefix: /
                      dynamic_metadata: [{ filter: ns, path: [{ key: tier }], value: { string_match: { exact: gold } } }]
                    route: { cluster: gold }
                  - match: { prefix: / }
                    route: { cluster: rest }
                """)
        func cluster(_ metadata: Metadata) -> String? {
            if case .forward(let t) = config.route(
                RouteRequest(method: "GET", path: "/", authority: "x", dynamicMetadata: metadata))
            {
                return t.cluster
            }
            return nil
        }
        #expect(cluster(Metadata(filterMetadata: ["ns": ["tier": .string("gold")]])) == "gold")
        #expect(cluster(Metadata(filterMetadata: ["ns": ["tier": .string("silver")]])) == "rest")
        #expect(cluster(Metadata()) == "rest")
    }

    // MARK: internal_only_headers

    static let internalOnly = """
        internal_only_headers: [X-Lyft-User-Id, ":path", host]
        virtual_hosts:
        - name: vh
          domains: ["*"]
          routes:
          - match: { prefix: /, headers: [{ name: x-lyft-user-id, present_match: true }] }
            route: { cluster: with_user }
          - match: { prefix: / }
            route: { cluster: without_user }
            request_headers_to_add: [{ header: { key: x-added, value: "1" } }]
        """

    @Test func internalOnlyHeadersAreRemovedFromExternalRequests() throws {
        let config = try RouteConfiguration.load(text: Self.internalOnly)
        #expect(config.internalOnlyHeaders == ["x-lyft-user-id"])

        let headers = HTTPHeaders([("x-lyft-user-id", "42"), ("x-other", "kept")])
        let external = RouteRequest(method: "GET", path: "/", authority: "a", headers: headers)
        guard case .forward(let target) = config.route(external) else {
            Issue.record("not forwarded")
            return
        }
        // Not seen by route matching, and not sent upstream.
        #expect(target.cluster == "without_user")
        var upstream = headers
        let context = RouteCheckObservation.formatContext
        for m in target.mutations { m.applyRequest(to: &upstream, context: context) }
        #expect(!upstream.contains(name: "x-lyft-user-id"))
        #expect(upstream.first(name: "x-other") == "kept")
        #expect(upstream.first(name: "x-added") == "1")

        var internalRequest = external
        internalRequest.isInternal = true
        guard case .forward(let internalTarget) = config.route(internalRequest) else {
            Issue.record("not forwarded")
            return
        }
        #expect(internalTarget.cluster == "with_user")
        var kept = headers
        for m in internalTarget.mutations { m.applyRequest(to: &kept, context: context) }
        #expect(kept.first(name: "x-lyft-user-id") == "42")
    }

    @Test func internalOnlyHeadersInRouteCheck() throws {
        let results = try Self.results(
            Self.internalOnly,
            """
            tests:
            - test_name: external
              input:
                authority: a
                path: /
                method: GET
                additional_request_headers: [{ key: x-lyft-user-id, value: "42" }]
              validate:
                cluster_name: without_user
                request_header_matches: [{ name: x-lyft-user-id, present_match: false }]
            - test_name: internal
              input:
                authority: a
                path: /
                method: GET
                internal: true
                additional_request_headers: [{ key: x-lyft-user-id, value: "42" }]
              validate:
                cluster_name: with_user
                request_header_matches: [{ name: x-lyft-user-id, string_match: { exact: "42" } }]
            """)
        for r in results { #expect(r.passed, "\(r.name): \(r.failures)") }
    }
}
