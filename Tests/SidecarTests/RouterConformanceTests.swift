import Foundation
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// Replays Envoy's router_check_tool test data (`shared/conformance/envoy-router-check`, see its README) through
/// the same library `sidecar route-check` uses (`RouteCheckTestFile`, `RouteCheckRunner`).
///
/// Each `<Name>.yaml` is a bare RouteConfiguration and `<Name>.golden.proto.json` its cases. Every case must
/// run: a config Pilotfish rejects as "not supported by Pilotfish yet", or a runtime override with nothing to
/// act on, would be counted as skipped, and the suite asserts that nothing is.
@Suite struct RouterConformanceTests {
    /// Cases upstream ships as meant to fail (see the README): they must fail here too.
    static let expectedFailures: Set<String> = [
        "RouteMetadata/MetadataValueMismatch",
        "RouteMetadata/MetadataNamespaceMissing",
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
        #expect(tally.skipped == 0, "\(tally.skipped) cases skipped:\n\(tally.skippedFiles.joined(separator: "\n"))")
        #expect(
            tally.failures.isEmpty,
            "\(tally.failures.count) conformance cases failed:\n\(tally.failures.joined(separator: "\n"))")
        for name in Self.expectedFailures.sorted() {
            let ran = tally.expectedFailures.contains { $0.name == name } || tally.unexpectedPasses.contains(name)
            #expect(ran, "\(name) is listed as meant to fail but did not run")
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
        let tests: RouteCheckTestFile
        do {
            let text = try String(
                contentsOf: directory.appendingPathComponent("\(name).golden.proto.json"), encoding: .utf8)
            tests = try RouteCheckTestFile.load(text: text)
        } catch {
            tally.failures.append("\(name): cannot read golden: \(error)")
            return
        }

        if let key = tests.runtimeKeys.first(where: { !RouteCheckTestFile.inertRuntimeKeys.contains($0) }) {
            tally.skip(tests.tests.count, file: name, reason: "runtime override \(key)")
            return
        }

        let config: RouteConfiguration
        do {
            let text = try String(contentsOf: directory.appendingPathComponent("\(name).yaml"), encoding: .utf8)
            config = try RouteConfiguration.load(text: text)
        } catch let error as ConfigError where error.message.contains("not supported by Pilotfish yet") {
            tally.skip(tests.tests.count, file: name, reason: "\(error)")
            return
        } catch {
            for c in tests.tests { tally.failures.append("\(name)/\(c.name): config does not load: \(error)") }
            tally.total += tests.tests.count
            return
        }

        for result in RouteCheckRunner(config: config).run(tests) {
            let testName = "\(name)/\(result.name)"
            tally.total += 1
            let detail = result.failures.joined(separator: "; ")
            switch (result.passed, Self.expectedFailures.contains(testName)) {
            case (true, false): tally.passed += 1
            case (false, false): tally.failures.append("\(testName): \(detail)")
            case (false, true): tally.expectedFailures.append((testName, detail))
            case (true, true): tally.unexpectedPasses.append(testName)
            }
        }
    }

    // MARK: - Helpers

    struct Tally {
        var total = 0
        var passed = 0
        var skipped = 0
        var failures: [String] = []
        var expectedFailures: [(name: String, detail: String)] = []
        var unexpectedPasses: [String] = []
        var skippedFiles: [String] = []

        mutating func skip(_ count: Int, file: String, reason: String) {
            skippedFiles.append("\(file) (\(count) cases): \(reason)")
            total += count
            skipped += count
        }

        var run: Int { passed + failures.count + expectedFailures.count + unexpectedPasses.count }

        var summary: String {
            var line = "router conformance: \(total) cases, \(run) run, \(passed) passed, \(skipped) skipped"
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
}
