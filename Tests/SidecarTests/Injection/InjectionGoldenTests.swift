import Foundation
import Injection
import Testing

/// `sidecar inject` over the manifests in golden/: each `NAME.in.yaml` (or `.in.json`) injected must equal
/// `NAME.out.yaml`, byte for byte, and injecting an output again must change nothing. `UPDATE_GOLDEN=1 swift test
/// --filter InjectionGoldenTests` rewrites the outputs (review the diff). scripts/k8s-validate checks the outputs
/// against Kubernetes' schemas.
struct InjectionGoldenTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("golden")
    static let settings = InjectorSettings(image: "ghcr.io/pilotfish/pilotfish:test", version: "test")

    static var inputs: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.contains(".in.") }.sorted()
    }

    @Test func thereAreGoldenCases() {
        #expect(Self.inputs.count >= 5)
    }

    @Test(arguments: inputs) func injectedAsTheGoldenFileSays(_ input: String) throws {
        let text = try String(contentsOf: Self.directory.appendingPathComponent(input), encoding: .utf8)
        let (yaml, _) = try ManifestInjector(settings: Self.settings).inject(text: text)
        let outName = String(input[..<input.range(of: ".in.")!.lowerBound]) + ".out.yaml"
        let outURL = Self.directory.appendingPathComponent(outName)
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try yaml.write(to: outURL, atomically: true, encoding: .utf8)
        }
        let expected = try String(contentsOf: outURL, encoding: .utf8)
        #expect(yaml == expected, "\(input): differs from \(outName) (UPDATE_GOLDEN=1 rewrites it)")
        // A second injection (the webhook called again, or kube-inject run twice) changes nothing.
        let (again, reports) = try ManifestInjector(settings: Self.settings).inject(text: yaml)
        #expect(again == yaml, "\(outName): injecting it again changed it")
        #expect(!reports.contains { $0.outcome == .injected }, "\(outName): a pod template was injected twice")
    }
}
