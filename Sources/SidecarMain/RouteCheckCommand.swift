import ArgumentParser
import Foundation
import Sidecar
import SidecarCore

/// `sidecar route-check`: Envoy's router_check_tool for Pilotfish's route table. Wiring only; the
/// `RouteCheck*` types in the library do the work.
struct RouteCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "route-check",
        _superCommandName: "sidecar",
        abstract: "Test a route table without starting a proxy, as Envoy's router_check_tool does.",
        discussion: """
            Routes each test case of the test file (Envoy's router_check_tool format, JSON or YAML) through the \
            route configuration and compares the result with what the case expects. Exits 1 when a case fails. \
            With every case passing, prints the route coverage.
            """)

    @Option(
        name: [.customShort("c"), .customLong("config-path")],
        help: ArgumentHelp("A RouteConfiguration (YAML or JSON), as Envoy's tool reads it.", valueName: "file"))
    var configPath: String?

    @Option(
        name: [.customShort("t"), .customLong("test-path")],
        help: ArgumentHelp("The test cases (router_check_tool's validation.proto, JSON or YAML).", valueName: "file"))
    var testPath: String?

    @Flag(name: [.customShort("d"), .customLong("details")], help: "Print each test's name, and the failed checks.")
    var details = false

    @Flag(name: .customLong("only-show-failures"), help: "Print only failed tests (with or without --details).")
    var onlyShowFailures = false

    @Option(
        name: [.customShort("f"), .customLong("fail-under")],
        help: ArgumentHelp("Fail when the route coverage is under this percent.", valueName: "percent"))
    var failUnder: Double = 0

    @Flag(name: .customLong("covall"), help: "Coverage over every checkable field of each route; list untested routes.")
    var comprehensiveCoverage = false

    @Flag(name: .customLong("detailed-coverage"), help: "List the routes no test covered.")
    var detailedCoverage = false

    @Flag(
        name: .customLong("disable-deprecation-check"),
        help: "Accepted for Envoy compatibility; Pilotfish does not fail deprecated route fields.")
    var disableDeprecationCheck = false

    func run() throws {
        guard let configPath, let testPath else {
            print("error: Both --config-path/c and --test-path/t are mandatory", to: &StandardError.stream)
            throw ExitCode(1)
        }
        let config: RouteConfiguration
        let tests: RouteCheckTestFile
        do {
            config = try RouteConfiguration.load(text: try read(configPath))
        } catch {
            print("error: invalid route configuration \(configPath): \(error)", to: &StandardError.stream)
            throw ExitCode(1)
        }
        do {
            tests = try RouteCheckTestFile.load(text: try read(testPath))
        } catch {
            print("error: invalid test file \(testPath): \(error)", to: &StandardError.stream)
            throw ExitCode(1)
        }
        for key in tests.runtimeKeys where !RouteCheckTestFile.inertRuntimeKeys.contains(key) {
            print(
                "warning: runtime key '\(key)' has no effect: Pilotfish has no runtime layer",
                to: &StandardError.stream)
        }
        let runner = RouteCheckRunner(config: config)
        let results = runner.run(tests)
        let report = RouteCheckReport(
            results: results, coverage: RouteCheckCoverage(config: runner.config, results: results),
            options: .init(
                details: details, onlyShowFailures: onlyShowFailures, failUnder: failUnder,
                comprehensiveCoverage: comprehensiveCoverage, detailedCoverage: detailedCoverage))
        for (stream, text) in report.lines {
            switch stream {
            case .standardOutput: print(text)
            case .standardError: print(text, to: &StandardError.stream)
            }
        }
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }

    private func read(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(path: "", line: nil, message: "cannot read '\(path)'")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
