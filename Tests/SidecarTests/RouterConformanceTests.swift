import Foundation
import NIOHTTP1
import Testing

@testable import Sidecar

/// Replays Envoy's router_check_tool test data (`shared/conformance/envoy-router-check`, see its README) against
/// Pilotfish's route table.
///
/// Each `<Name>.yaml` is a bare RouteConfiguration and `<Name>.golden.proto.json` its cases. A case is *run* when
/// its config loads and every field it asks about can be checked; it is *skipped*, naming the missing feature,
/// when the config uses an Envoy field Pilotfish rejects as "not supported by Pilotfish yet", or when the case
/// needs an input or check Pilotfish has no equivalent for. The actual values follow the upstream tool
/// (`test/tools/router_check/router.cc`): cluster, virtual host and rewrites come from a forwarding route only;
/// path_redirect and code_redirect from a redirect or direct response only.
@Suite struct RouterConformanceTests {
    /// Cases upstream ships as meant to fail (see the README): they must fail here too.
    static let expectedFailures: Set<String> = [
        "RouteMetadata/MetadataValueMismatch",
        "RouteMetadata/MetadataNamespaceMissing",
    ]

    /// Runtime overrides a golden may ask for that have nothing to act on in Pilotfish: it puts no limit on
    /// regex program size.
    static let ignorableRuntimeKeys: Set<String> = [
        "re2.max_program_size.error_level", "re2.max_program_size.warn_level",
    ]

    /// The suite's own count of cases (README, "total").
    static let upstreamCaseCount = 109

    @Test func envoyRouterCheckToolCasesPass() throws {
        guard let directory = Self.conformanceDirectory() else {
            Issue.record(
                "conformance data not found; expected shared/conformance/envoy-router-check/config beside the repository"
            )
            return
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".golden.proto.json") }
            .map { String($0.dropLast(".golden.proto.json".count)) }
            .sorted()
        #expect(!names.isEmpty)

        var tally = Tally()
        for name in names {
            replay(name, in: directory, into: &tally)
        }

        print(tally.summary)
        for file in tally.skippedFiles { print("  skipped \(file)") }
        for failure in tally.failures { print("  FAILED \(failure)") }
        for (name, detail) in tally.expectedFailures { print("  expected failure \(name): \(detail)") }

        #expect(
            tally.total == Self.upstreamCaseCount,
            "the goldens hold \(tally.total) cases, not \(Self.upstreamCaseCount)")
        #expect(
            tally.failures.isEmpty,
            "\(tally.failures.count) conformance cases failed:\n\(tally.failures.joined(separator: "\n"))")
        for name in Self.expectedFailures.sorted() {
            let ran = tally.expectedFailures.contains { $0.name == name } || tally.unexpectedPasses.contains(name)
            let skipped = tally.skippedCases.contains(name)
            #expect(ran || skipped, "\(name) is listed as meant to fail but was not found")
        }
        for (name, detail) in tally.expectedFailures {
            withKnownIssue("\(name) is meant to fail upstream") { Issue.record("\(detail)") }
        }
        for name in tally.unexpectedPasses {
            withKnownIssue("\(name) is meant to fail upstream") {
                // Recording nothing here makes Swift Testing report that the known issue did not occur.
            }
        }
    }

    // MARK: - Replay

    private func replay(_ name: String, in directory: URL, into tally: inout Tally) {
        let cases: [ConfigValue]
        let runtime: [(key: String, value: ConfigValue)]
        do {
            let golden = try Self.parse(file: directory.appendingPathComponent("\(name).golden.proto.json"))
            let top = try Self.fields(golden)
            cases = try top["tests"]?.array() ?? []
            runtime = try top["runtime"]?.map() ?? []
        } catch {
            tally.failures.append("\(name): cannot read golden: \(error)")
            return
        }

        if let unknown = runtime.first(where: { !Self.ignorableRuntimeKeys.contains($0.key) }) {
            tally.skip(cases.count, file: name, cases: cases, reason: "runtime override \(unknown.key)")
            return
        }

        var config: RouteConfiguration
        do {
            let text = try String(contentsOf: directory.appendingPathComponent("\(name).yaml"), encoding: .utf8)
            config = try RouteConfiguration.load(text: text)
        } catch let error as ConfigError where error.message.contains("not supported by Pilotfish yet") {
            tally.skip(cases.count, file: name, cases: cases, reason: Self.unsupportedFeature(error))
            return
        } catch {
            for c in cases { tally.failures.append("\(name)/\(Self.testName(c)): config does not load: \(error)") }
            tally.total += cases.count
            return
        }
        Self.mirrorToolRuntimeFractions(&config)

        for c in cases {
            let testName = "\(name)/\(Self.testName(c))"
            tally.total += 1
            let result: CaseResult
            do {
                result = try Self.check(c, against: config)
            } catch {
                tally.failures.append("\(testName): cannot read case: \(error)")
                continue
            }
            switch result {
            case .skipped(let reason):
                tally.skipped[reason, default: 0] += 1
                tally.skippedCases.insert(testName)
            case .checked(let mismatches):
                let meantToFail = Self.expectedFailures.contains(testName)
                switch (mismatches.isEmpty, meantToFail) {
                case (true, false):
                    tally.passed += 1
                case (false, false):
                    tally.failures.append("\(testName): \(mismatches.joined(separator: "; "))")
                case (false, true):
                    tally.expectedFailures.append((testName, mismatches.joined(separator: "; ")))
                case (true, true):
                    tally.unexpectedPasses.append(testName)
                }
            }
        }
    }

    /// The upstream tool raises a 0 % `runtime_fraction` to 1 % before it runs (`assignRuntimeFraction`), so
    /// that such a route can be reached with `random_value: 0` (Runtime `Test_4`). The router itself keeps
    /// Envoy's strict `random % denominator < numerator`.
    static func mirrorToolRuntimeFractions(_ config: inout RouteConfiguration) {
        for v in config.virtualHosts.indices {
            for r in config.virtualHosts[v].routes.indices
            where config.virtualHosts[v].routes[r].match.runtimeFraction?.numerator == 0 {
                config.virtualHosts[v].routes[r].match.runtimeFraction?.numerator = 1
            }
        }
    }

    enum CaseResult {
        case skipped(String)
        case checked([String])
    }

    static let inputFields: Set<String> = [
        "authority", "path", "method", "ssl", "internal", "random_value", "runtime", "additional_request_headers",
        "additional_response_headers",
    ]
    static let validateFields: Set<String> = [
        "cluster_name", "virtual_cluster_name", "virtual_host_name", "path_rewrite", "host_rewrite", "path_redirect",
        "code_redirect", "request_header_matches", "response_header_matches", "request_header_fields",
        "response_header_fields", "timeout", "route_metadata",
    ]

    static func check(_ testCase: ConfigValue, against config: RouteConfiguration) throws -> CaseResult {
        let fields = try Self.fields(testCase)
        let input = try fields["input"].map(Self.fields) ?? [:]
        let validate = try fields["validate"].map(Self.fields) ?? [:]
        if input["dynamic_metadata"] != nil { return .skipped("dynamic_metadata") }
        if let unknown = input.keys.sorted().first(where: { !inputFields.contains($0) }) {
            return .skipped("input.\(unknown)")
        }
        if let unknown = validate.keys.sorted().first(where: { !validateFields.contains($0) }) {
            return .skipped("validate.\(unknown)")
        }

        let request = try Self.request(from: input)
        let actual = try Actual(
            config: config, request: request,
            responseHeaders: try Self.headerValues(input["additional_response_headers"]))
        var mismatches: [String] = []
        func compare(_ field: String, _ got: String) throws {
            guard let v = validate[field] else { return }
            let want = try v.string()
            if want != got { mismatches.append("\(field): expected '\(want)', got '\(got)'") }
        }
        try compare("cluster_name", actual.cluster)
        // A config that declares virtual clusters is rejected at load (not supported yet), so any config that
        // got here has none, and Envoy's answer for a virtual host without virtual clusters is "".
        try compare("virtual_cluster_name", "")
        try compare("virtual_host_name", actual.virtualHost)
        try compare("path_rewrite", actual.pathRewrite)
        try compare("host_rewrite", actual.hostRewrite)
        try compare("path_redirect", actual.pathRedirect)
        try compare("code_redirect", String(actual.code))
        try compare("timeout", actual.timeout)
        for (field, headers) in [
            ("request_header_matches", actual.requestHeaders),
            ("response_header_matches", actual.responseHeaders),
        ] {
            for matcherValue in try validate[field]?.array() ?? [] {
                let matcher = try HeaderMatcher.decode(matcherValue)
                if !matcher.matches({ Self.joined(headers, $0) }) {
                    mismatches.append(
                        "\(field): \(Self.describe(matcherValue)) does not match "
                            + "\(matcher.name): \(Self.joined(headers, matcher.name) ?? "<absent>")")
                }
            }
        }
        for (field, headers) in [
            ("request_header_fields", actual.requestHeaders),
            ("response_header_fields", actual.responseHeaders),
        ] {
            for (key, want) in try Self.headerValues(validate[field]) {
                let got = headers.first(name: key) ?? ""
                if got != want { mismatches.append("\(field) \(key): expected '\(want)', got '\(got)'") }
            }
        }
        for item in try validate["route_metadata"]?.array() ?? [] {
            let f = try Self.fields(item)
            let namespace = try f["namespace"]?.string() ?? ""
            let key = try f["key"]?.string() ?? ""
            let want = try f["value"]?.string() ?? ""
            let got = actual.metadata?.value(namespace: namespace, key: key)
            if got != .string(want) {
                mismatches.append(
                    "route_metadata \(namespace).\(key): expected '\(want)', got \(got.map { "\($0)" } ?? "<absent>")")
            }
        }
        return .checked(mismatches)
    }

    /// The request the tool builds (`ToolConfig::create`).
    static func request(from input: [String: ConfigValue]) throws -> RouteRequest {
        let ssl = try input["ssl"]?.bool() ?? false
        let isInternal = try input["internal"]?.bool() ?? false
        let scheme = ssl ? "https" : "http"
        var headers = HTTPHeaders()
        headers.add(name: "x-forwarded-proto", value: scheme)
        if isInternal { headers.add(name: "x-envoy-internal", value: "true") }
        for (key, value) in try headerValues(input["additional_request_headers"]) {
            headers.add(name: key, value: value)
        }
        return RouteRequest(
            method: try input["method"]?.string() ?? "", path: try input["path"]?.string() ?? "",
            authority: try input["authority"]?.string() ?? "", scheme: scheme, isInternal: isInternal,
            headers: headers, randomValue: UInt64(try input["random_value"]?.int(min: 0) ?? 0),
            // The tool's runtime mock: only the case's `runtime` key is on; without one, none is.
            enabledRuntimeKey: try input["runtime"]?.string() ?? "")
    }

    /// What the tool reads back after routing and finalizing headers.
    struct Actual {
        var cluster = ""
        var virtualHost = ""
        var pathRewrite = ""
        var hostRewrite = ""
        var pathRedirect = ""
        var code = 0
        var timeout = ""
        var metadata: Metadata?
        var requestHeaders = HTTPHeaders()
        var responseHeaders = HTTPHeaders()

        /// Template values as the tool evaluates them: the downstream remote is 127.0.0.1.
        static let formatContext = FormatContext(
            downstreamRemote: "127.0.0.1:0", downstreamRemoteWithoutPort: "127.0.0.1", downstreamLocal: "127.0.0.1:0",
            downstreamLocalWithoutPort: "127.0.0.1", proto: "HTTP/1.1", hostname: "localhost")

        init(config: RouteConfiguration, request: RouteRequest, responseHeaders extraResponse: [(String, String)])
            throws
        {
            requestHeaders.add(name: ":authority", value: request.authority)
            requestHeaders.add(name: ":path", value: request.path)
            requestHeaders.add(name: ":method", value: request.method)
            requestHeaders.add(name: ":scheme", value: request.scheme)
            requestHeaders.add(contentsOf: request.headers)
            for (k, v) in extraResponse { responseHeaders.add(name: k, value: v) }
            if case .route(let v, let r) = config.select(request) {
                metadata = config.virtualHosts[v].routes[r].metadata
            }

            switch config.route(request) {
            case .noRoute:
                break
            case .forward(let target):
                cluster = target.cluster
                virtualHost = target.virtualHost
                timeout = target.timeout.description
                // finalizeRequestHeaders: header mutations (most specific first, so the least specific wins),
                // then the host rewrite, then the path rewrite.
                for m in target.mutations { m.applyRequest(to: &requestHeaders, context: Self.formatContext) }
                if let host = target.hostRewrite { requestHeaders.replaceOrAdd(name: ":authority", value: host) }
                requestHeaders.replaceOrAdd(name: ":path", value: target.path)
                for m in target.mutations { m.applyResponse(to: &responseHeaders, context: Self.formatContext) }
                pathRewrite = requestHeaders.first(name: ":path") ?? ""
                hostRewrite = requestHeaders.first(name: ":authority") ?? ""
            case .redirect(let location, let status, let mutations, _):
                pathRedirect = location
                code = status
                responseHeaders.replaceOrAdd(name: ":status", value: String(status))
                for m in mutations { m.applyResponse(to: &responseHeaders, context: Self.formatContext) }
            case .directResponse(let response, let mutations, _):
                // newUri without a redirect config: the request's own URL.
                let path = request.path.hasPrefix("/") ? request.path : "/" + request.path
                pathRedirect = request.scheme + "://" + request.authority + path
                code = response.status
                // sendLocalReply: a body brings content-length and content-type text/plain.
                responseHeaders.replaceOrAdd(name: ":status", value: String(response.status))
                if let body = response.body, !body.isEmpty {
                    responseHeaders.replaceOrAdd(name: "content-length", value: String(body.count))
                    responseHeaders.replaceOrAdd(name: "content-type", value: "text/plain")
                }
                for m in mutations { m.applyResponse(to: &responseHeaders, context: Self.formatContext) }
            }
        }
    }

    // MARK: - Helpers

    struct Tally {
        var total = 0
        var passed = 0
        var failures: [String] = []
        var skipped: [String: Int] = [:]
        var skippedCases: Set<String> = []
        var expectedFailures: [(name: String, detail: String)] = []
        var unexpectedPasses: [String] = []
        var skippedFiles: [String] = []

        mutating func skip(_ count: Int, file: String, cases: [ConfigValue], reason: String) {
            skippedFiles.append("\(file) (\(count) cases): \(reason)")
            total += count
            skipped[reason, default: 0] += count
            for c in cases { skippedCases.insert("\(file)/\(RouterConformanceTests.testName(c))") }
        }

        var run: Int { passed + failures.count + expectedFailures.count + unexpectedPasses.count }

        var summary: String {
            let reasons = skipped.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
                .map { "\($0.key): \($0.value)" }.joined(separator: ", ")
            let skippedCount = skipped.values.reduce(0, +)
            var line = "router conformance: \(passed) passed of \(run) run, \(skippedCount) skipped"
            if !reasons.isEmpty { line += " (\(reasons))" }
            line += ", \(expectedFailures.count) expected failures, \(failures.count) failed"
            if !unexpectedPasses.isEmpty { line += ", \(unexpectedPasses.count) meant to fail but passed" }
            return line
        }
    }

    /// `<repo>/../shared/conformance/envoy-router-check/config`, found from this file's location (or
    /// `PILOTFISH_CONFORMANCE_DIR`, pointing at the `envoy-router-check` directory).
    static func conformanceDirectory(filePath: String = #filePath) -> URL? {
        var candidates: [URL] = []
        if let env = ProcessInfo.processInfo.environment["PILOTFISH_CONFORMANCE_DIR"], !env.isEmpty {
            candidates.append(URL(fileURLWithPath: env).appendingPathComponent("config"))
        }
        let repo = URL(fileURLWithPath: filePath)
            .deletingLastPathComponent()  // Tests/SidecarTests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()  // the repository
        candidates.append(
            repo.deletingLastPathComponent()
                .appendingPathComponent("shared/conformance/envoy-router-check/config"))
        var isDirectory: ObjCBool = false
        return candidates.first {
            FileManager.default.fileExists(atPath: $0.path, isDirectory: &isDirectory) && isDirectory.boolValue
        }
    }

    /// Goldens are read as YAML: TestRoutes' golden has a trailing comma that strict JSON rejects.
    static func parse(file: URL) throws -> ConfigValue {
        let text = try String(contentsOf: file, encoding: .utf8)
        guard let node = try ConfigDocument.parse(text) else {
            throw ConfigError(path: "", line: nil, message: "\(file.lastPathComponent) is empty")
        }
        return ConfigValue(node: node, path: "")
    }

    static func fields(_ value: ConfigValue) throws -> [String: ConfigValue] {
        Dictionary(try value.map(), uniquingKeysWith: { first, _ in first })
    }

    static func testName(_ testCase: ConfigValue) -> String {
        (try? fields(testCase)["test_name"]?.string()) ?? "<unnamed>"
    }

    static func headerValues(_ value: ConfigValue?) throws -> [(String, String)] {
        try (value?.array() ?? []).map { item in
            let f = try fields(item)
            return (try f["key"]?.string() ?? "", try f["value"]?.string() ?? "")
        }
    }

    /// All values of a header joined with ",", as Envoy's header matchers see them.
    static func joined(_ headers: HTTPHeaders, _ name: String) -> String? {
        let values = headers[name]
        return values.isEmpty ? nil : values.joined(separator: ",")
    }

    static func describe(_ value: ConfigValue) -> String {
        guard let f = try? fields(value) else { return "matcher" }
        return "{"
            + f.keys.sorted().map { key in
                if let s = try? f[key]!.string() { return "\(key): \(s)" }
                return "\(key): \(describe(f[key]!))"
            }.joined(separator: ", ") + "}"
    }

    /// The Envoy field named by a "not supported by Pilotfish yet" error.
    static func unsupportedFeature(_ error: ConfigError) -> String {
        if let start = error.message.range(of: "field '"),
            let end = error.message[start.upperBound...].firstIndex(of: "'")
        {
            return String(error.message[start.upperBound..<end])
        }
        let last = error.path.split(separator: ".").last.map(String.init) ?? error.path
        return last.split(separator: "[").first.map(String.init) ?? last
    }
}
