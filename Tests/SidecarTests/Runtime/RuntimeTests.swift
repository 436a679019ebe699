import Foundation
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// The runtime's values and how features read them (Envoy's `SnapshotImpl`), without a server.
@Suite struct RuntimeValueTests {
    @Test func valuesParseAsEnvoyResolvesThem() {
        let fifty = RuntimeEntry(raw: "50")
        #expect(fifty.uint == 50 && fifty.bool == true && fifty.double == 50)
        #expect(RuntimeEntry(raw: "0").bool == false)
        let t = RuntimeEntry(raw: "True")
        #expect(t.bool == true && t.uint == nil && t.double == nil)
        // A number >= 0 truncates to an integer; a negative one is no integer.
        #expect(RuntimeEntry(raw: "50.9").uint == 50)
        #expect(RuntimeEntry(raw: "1e3").uint == 1000)
        #expect(RuntimeEntry(raw: "-5").uint == nil)
        #expect(RuntimeEntry(raw: "abc").uint == nil)
        #expect(RuntimeEntry(raw: "abc").fractionalPercent == nil)
        // Anything else may be a FractionalPercent in YAML or JSON.
        #expect(RuntimeEntry(raw: "{numerator: 5, denominator: MILLION}").fractionalPercent
            == FractionalPercent(numerator: 5, denominator: 1_000_000))
        #expect(RuntimeEntry(raw: "numerator: 30").fractionalPercent == FractionalPercent(numerator: 30, denominator: 100))
        #expect(RuntimeEntry(raw: #"{"numerator": 1, "denominator": "TEN_THOUSAND"}"#).fractionalPercent
            == FractionalPercent(numerator: 1, denominator: 10_000))
        #expect(RuntimeEntry(raw: "{numerator: 5, extra: 1}").fractionalPercent == nil)
    }

    static func snapshot(_ values: [String: String]) -> RuntimeSnapshot {
        RuntimeSnapshot(layers: [RuntimeLayerValues(name: "l", values: values.mapValues { RuntimeEntry(raw: $0) })])
    }

    @Test func featureEnabledReadsAFractionAPercentageOrTheDefault() {
        let s = Self.snapshot([
            "zero": "0", "all": "100", "over": "101", "half": "50", "fp": "{numerator: 1, denominator: TEN_THOUSAND}",
            "word": "abc", "bool": "true", "neg": "-3",
        ])
        let tenPercent = FractionalPercent(numerator: 10, denominator: 100)
        func on(_ key: String?, _ random: UInt64) -> Bool { s.featureEnabled(key, default: tenPercent, random: random) }
        #expect(!on("zero", 0))
        #expect(on("all", 99))
        #expect(on("over", 12345))  // above 100: always
        #expect(on("half", 49) && !on("half", 50) && on("half", 149))
        #expect(on("fp", 0) && !on("fp", 1) && on("fp", 10_000))
        // No usable value: the default (10%).
        for key in ["word", "bool", "neg", "missing", ""] {
            #expect(on(key, 9) && !on(key, 10), "\(key)")
        }
        #expect(on(nil, 9) && !on(nil, 10))
    }

    @Test func laterLayersOverrideEarlierOnes() {
        let s = RuntimeSnapshot(layers: [
            RuntimeLayerValues(name: "a", values: ["k": RuntimeEntry(raw: "1"), "only-a": RuntimeEntry(raw: "x")]),
            RuntimeLayerValues(name: "b", values: ["k": RuntimeEntry(raw: "2")]),
        ])
        #expect(s.values["k"]?.raw == "2")
        #expect(s.values["only-a"]?.raw == "x")
        #expect(s.integer("k", default: 0) == 2)
        #expect(s.boolean("k", default: false))
    }

    static func decode(_ layers: String) throws -> LayeredRuntimeConfig {
        let b = try Bootstrap.load(text: "layered_runtime:\n  layers:\n" + layers)
        return b.layeredRuntime!
    }

    @Test func staticLayersFlattenNestedMappingsAndKeepFractions() throws {
        let c = try Self.decode("""
              - name: base
                static_layer:
                  routes.canary: 20
                  a: {b: {c: 3, d: "s"}, e: false}
                  fp: {numerator: 5, denominator: TEN_THOUSAND}
                  q: "0050"
              - name: admin
                admin_layer: {}

            """)
        let runtime = Runtime(c)
        let values = runtime.snapshot.values
        #expect(values.keys.sorted() == ["a.b.c", "a.b.d", "a.e", "fp", "q", "routes.canary"])
        #expect(values["a.b.c"]?.raw == "3")
        #expect(values["a.e"]?.bool == false)
        #expect(values["q"]?.raw == "0050" && values["q"]?.uint == 50)
        #expect(values["fp"]?.fractionalPercent == FractionalPercent(numerator: 5, denominator: 10_000))
        #expect(runtime.snapshot.layers.map(\.name) == ["base", "admin"])
    }

    @Test func adminValuesOverrideAndAnEmptyValueRemovesTheOverride() throws {
        let runtime = Runtime(try Self.decode("""
              - {name: base, static_layer: {k: 1}}
              - {name: admin, admin_layer: {}}

            """))
        #expect(runtime.mergeAdminValues([("k", "7"), ("new", "x")]))
        #expect(runtime.snapshot.values["k"]?.uint == 7)
        #expect(runtime.snapshot.layers[1].values.count == 2)
        #expect(runtime.mergeAdminValues([("k", ""), ("new", "")]))
        #expect(runtime.snapshot.values["k"]?.uint == 1)
        #expect(runtime.snapshot.values["new"] == nil)
        #expect(!Runtime().mergeAdminValues([("k", "1")]))
    }

    @Test func unsupportedAndInvalidLayersAreRefused() throws {
        func error(_ layers: String) -> String {
            do {
                _ = try Self.decode(layers)
                return ""
            } catch {
                return "\(error)"
            }
        }
        let disk = error("  - {name: d, disk_layer: {symlink_root: /srv/runtime}}\n")
        #expect(disk.contains("disk_layer is not supported") && disk.contains("static_layer, admin_layer"))
        #expect(error("  - {name: r, rtds_layer: {name: x}}\n").contains("rtds_layer is not supported"))
        #expect(error("  - {name: a, static_layer: {}}\n  - {name: a, admin_layer: {}}\n")
            .contains("Duplicate layer name: a"))
        #expect(error("  - {name: a, admin_layer: {}}\n  - {name: b, admin_layer: {}}\n")
            .contains("Too many admin layers"))
        #expect(error("  - {name: a, static_layer: {k: [1, 2]}}\n").contains("Invalid runtime entry value for k"))
        #expect(error("  - {name: a, static_layer: {k: {n: null}}}\n").contains("Invalid runtime entry value for k.n"))
        #expect(error("  - {static_layer: {k: 1}}\n").contains("name"))
        #expect(error("  - {name: a}\n").contains("one of"))
    }
}
