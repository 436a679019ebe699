import Foundation
import Testing

/// `sidecar route-check` as CI runs it: the built binary, its output and its exit status.
@Suite struct RouteCheckCommandTests {
    /// The `sidecar` executable next to the test bundle (`swift build --build-tests` builds both), or
    /// `PILOTFISH_SIDECAR_BIN`.
    static func sidecarBinary() -> URL? {
        var candidates: [URL] = []
        if let env = ProcessInfo.processInfo.environment["PILOTFISH_SIDECAR_BIN"], !env.isEmpty {
            candidates.append(URL(fileURLWithPath: env))
        }
        for base in [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()] {
            candidates.append(base.appendingPathComponent("sidecar"))
        }
        candidates.append(
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sidecar"))
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ binary: URL, _ arguments: [String]) throws -> Run {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // The outputs are small; read both to the end before waiting.
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }

    @Test func passingAndFailingTestFiles() throws {
        let binary = try #require(Self.sidecarBinary(), "the sidecar executable was not found; build it first")
        let directory = try #require(
            RouterConformanceTests.conformanceDirectory(), "conformance data not found")
        let config = directory.appendingPathComponent("ClusterHeader.yaml").path

        let pass = try Self.run(
            binary,
            ["route-check", "-c", config, "-t", directory.appendingPathComponent("ClusterHeader.golden.proto.json").path,
             "--details"])
        #expect(pass.status == 0, "stdout: \(pass.stdout)\nstderr: \(pass.stderr)")
        #expect(pass.stdout == "Test1\nTest2\nTest3\nCurrent route coverage: 100%\n")
        #expect(pass.stderr.isEmpty)

        let wrong = FileManager.default.temporaryDirectory
            .appendingPathComponent("route-check-wrong-\(ProcessInfo.processInfo.processIdentifier).yaml")
        try """
            tests:
            - test_name: Right
              input: { authority: some_cluster, path: /foo, method: GET }
              validate: { cluster_name: some_cluster }
            - test_name: Wrong
              input: { authority: www.lyft.com, path: /bar, method: GET }
              validate: { cluster_name: some_cluster, virtual_host_name: local_service }
            """.write(to: wrong, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: wrong) }

        let fail = try Self.run(binary, ["route-check", "--config-path", config, "--test-path", wrong.path, "--details"])
        #expect(fail.status == 1)
        #expect(fail.stdout == "Right\n")
        #expect(fail.stderr == "Wrong\nexpected: [some_cluster], actual: [], test type: cluster_name\n")

        let onlyFailures = try Self.run(
            binary, ["route-check", "-c", config, "-t", wrong.path, "--only-show-failures"])
        #expect(onlyFailures.status == 1)
        #expect(onlyFailures.stdout.isEmpty)
        #expect(onlyFailures.stderr.contains("expected: [some_cluster], actual: [], test type: cluster_name"))

        let missing = try Self.run(binary, ["route-check", "-c", config])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("Both --config-path/c and --test-path/t are mandatory"))
    }
}
