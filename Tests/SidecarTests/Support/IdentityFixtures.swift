import Foundation
@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// A fresh directory under the system temporary directory, removed when `body` returns.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("pilotfish-identity-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

/// Runs `/usr/bin/openssl` (the real tool, as operators will) and returns its exit status and merged output.
func runOpenSSL(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

func readFile(_ path: String) throws -> String {
    try String(contentsOfFile: path, encoding: .utf8)
}

/// The permission bits of `path` (e.g. 0o600).
func fileMode(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.posixPermissions] as! NSNumber).intValue & 0o777
}

/// 2030-01-01T00:00:00Z: a fixed "now" so lifetimes are exact.
let identityTestNow = Date(timeIntervalSince1970: 1_893_456_000)

func kubernetesID(_ namespace: String = "default", _ serviceAccount: String = "web") throws -> SPIFFEID {
    try SPIFFEID(trustDomain: "cluster.local", namespace: namespace, serviceAccount: serviceAccount)
}
