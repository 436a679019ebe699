import Atomics
import NIOConcurrencyHelpers
import Yams

/// The bootstrap's `layered_runtime`: its layers in order, later layers overriding earlier ones.
public struct LayeredRuntimeConfig: Sendable {
    package enum Kind: Sendable {
        /// `static_layer`: keys → values, fixed by the config.
        case staticLayer([String: RuntimeEntry])
        /// `admin_layer`: what admin `/runtime_modify` sets.
        case admin
    }

    package struct Layer: Sendable {
        package var name: String
        package var kind: Kind
    }

    package var layers: [Layer] = []

    package init(layers: [Layer] = []) {
        self.layers = layers
    }

    /// The layer kinds Pilotfish runs.
    package static let supportedKinds = ["static_layer", "admin_layer"]

    package static func decode(_ value: ConfigValue) throws -> LayeredRuntimeConfig {
        let obj = try value.object()
        var config = LayeredRuntimeConfig()
        var names = Set<String>()
        var admin: String?
        for item in try obj.list("layers") {
            let lo = try item.object()
            let nameValue = try lo.required("name")
            let name = try nameValue.nonEmptyString()
            guard names.insert(name).inserted else { throw nameValue.error("Duplicate layer name: \(name)") }
            let (kind, v) = try lo.oneOf(["static_layer", "disk_layer", "admin_layer", "rtds_layer"])!
            switch kind {
            case "static_layer":
                var values: [String: RuntimeEntry] = [:]
                for (key, child) in try v.map() { try walk(child, key, &values) }
                config.layers.append(Layer(name: name, kind: .staticLayer(values)))
            case "admin_layer":
                try v.object().finish()
                if let first = admin {
                    throw v.error("Too many admin layers specified in LayeredRuntime, at most one may be specified "
                        + "('\(first)' is one already)")
                }
                admin = name
                config.layers.append(Layer(name: name, kind: .admin))
            default:
                throw v.error("layered_runtime layer '\(name)': \(kind) is not supported by Pilotfish yet; supported "
                    + "layer kinds: " + supportedKinds.joined(separator: ", "))
            }
            try lo.finish()
        }
        try obj.finish()
        return config
    }

    /// Envoy's `ProtoLayer::walkProtoValue`: nested mappings become dotted keys; a mapping that is empty or has a
    /// `numerator` or `denominator` is one value (a FractionalPercent); lists and nulls are refused.
    private static func walk(_ v: ConfigValue, _ key: String, _ values: inout [String: RuntimeEntry]) throws {
        switch v.node {
        case .scalar(let s) where !v.isNull:
            // The first value of a key wins, as Envoy's emplace (`a.b: 1` and `a: {b: 2}` give 1).
            if values[key] == nil { values[key] = RuntimeEntry(raw: s.string) }
        case .mapping:
            let fields = try v.map()
            if fields.isEmpty || fields.contains(where: { $0.key == "numerator" || $0.key == "denominator" }) {
                if values[key] == nil {
                    values[key] = RuntimeEntry(raw: jsonText(v), fractionalPercent: RuntimeEntry.fractionalPercent(v))
                }
                return
            }
            for (k, child) in fields { try walk(child, key + "." + k, &values) }
        default:
            throw v.error("Invalid runtime entry value for \(key)")
        }
    }

    /// A static-layer mapping as `/runtime` shows it. Envoy 1.40 shows protobuf debug text there
    /// ("goo.gle/debugproto … fields { key: … }"); Pilotfish shows compact JSON.
    package static func jsonText(_ v: ConfigValue) -> String {
        switch v.node {
        case .mapping:
            let fields = ((try? v.map()) ?? []).sorted { $0.key < $1.key }
            return "{" + fields.map { "\"\(JSONText.escape($0.key))\":\(jsonText($0.value))" }
                .joined(separator: ",") + "}"
        case .sequence:
            return "[" + ((try? v.array()) ?? []).map(jsonText).joined(separator: ",") + "]"
        case .scalar(let s):
            if v.isNull { return "null" }
            if s.style == .plain && (s.string == "true" || s.string == "false" || Double(s.string) != nil) {
                return s.string
            }
            return "\"\(JSONText.escape(s.string))\""
        default:
            return "null"
        }
    }
}

/// Envoy's runtime loader for one server: the layers of `layered_runtime`, merged into a snapshot that workers
/// read lock-free (one atomic load of an immutable object). Admin `/runtime_modify` changes the admin layer: the
/// change is made under a lock (writers only) and published as a new snapshot.
///
/// Without `layered_runtime` there are no layers, as in Envoy 1.40: every key reads as absent (defaults apply)
/// and `/runtime_modify` is refused.
public final class Runtime: Sendable {
    package let config: LayeredRuntimeConfig
    private let current: ManagedAtomic<RuntimeSnapshot>
    /// The admin layer's values; only touched by writers, under its lock.
    private let admin = NIOLockedValueBox<[String: RuntimeEntry]>([:])
    private let adminIndex: Int?
    /// Snapshots loaded: Envoy loads one when the loader is made and another once RTDS is ready (even with no
    /// RTDS layer), then one per admin change.
    private let loads = ManagedAtomic(2)

    public convenience init() { self.init(LayeredRuntimeConfig()) }

    package init(_ config: LayeredRuntimeConfig) {
        self.config = config
        adminIndex = config.layers.firstIndex {
            if case .admin = $0.kind { return true }
            return false
        }
        current = ManagedAtomic(Self.snapshot(config, admin: [:]))
    }

    /// The current values. Cheap enough for every request; hold the snapshot for the length of one decision.
    package var snapshot: RuntimeSnapshot { current.load(ordering: .acquiring) }

    package var hasAdminLayer: Bool { adminIndex != nil }

    private static func snapshot(_ config: LayeredRuntimeConfig, admin: [String: RuntimeEntry]) -> RuntimeSnapshot {
        RuntimeSnapshot(layers: config.layers.map { layer in
            switch layer.kind {
            case .staticLayer(let values): return RuntimeLayerValues(name: layer.name, values: values)
            case .admin: return RuntimeLayerValues(name: layer.name, values: admin)
            }
        })
    }

    /// Admin `/runtime_modify`: each key gets its value in the admin layer; an empty value removes the key from it
    /// (Envoy's `AdminLayer::mergeValues`). False when there is no admin layer.
    package func mergeAdminValues(_ pairs: [(key: String, value: String)]) -> Bool {
        guard adminIndex != nil else { return false }
        admin.withLockedValue { values in
            for (k, v) in pairs {
                if v.isEmpty {
                    values.removeValue(forKey: k)
                } else {
                    values[k] = RuntimeEntry(raw: v)
                }
            }
            current.store(Self.snapshot(config, admin: values), ordering: .releasing)
            loads.wrappingIncrement(ordering: .relaxed)
        }
        return true
    }

    /// `runtime.*` as Envoy shows them.
    package func registerStats(_ r: StatsRegistry) {
        r.registerComputed("runtime.admin_overrides_active", family: "runtime.admin_overrides_active") { [self] in
            admin.withLockedValue { $0.isEmpty ? 0 : 1 }
        }
        r.registerComputed("runtime.deprecated_feature_seen_since_process_start",
                           family: "runtime.deprecated_feature_seen_since_process_start") { 0 }
        r.registerComputed("runtime.deprecated_feature_use", kind: .counter, family: "runtime.deprecated_feature_use") { 0 }
        r.registerComputed("runtime.load_error", kind: .counter, family: "runtime.load_error") { 0 }
        r.registerComputed("runtime.load_success", kind: .counter, family: "runtime.load_success") { [loads] in
            loads.load(ordering: .relaxed)
        }
        r.registerComputed("runtime.num_keys", family: "runtime.num_keys") { [self] in snapshot.values.count }
        r.registerComputed("runtime.num_layers", family: "runtime.num_layers") { [config] in config.layers.count }
        r.registerComputed("runtime.override_dir_exists", kind: .counter, family: "runtime.override_dir_exists") { 0 }
        // Counted with every load that found no disk layer: always, as Pilotfish has none.
        r.registerComputed("runtime.override_dir_not_exists", kind: .counter,
                           family: "runtime.override_dir_not_exists") { [loads] in loads.load(ordering: .relaxed) }
    }

    /// Admin `/runtime`: Envoy's JSON, `layers` by name in order and, per key, its final value and its value in
    /// each layer ("" where a layer has none). Keys are sorted (Envoy's order is its hash map's).
    package func json() -> String {
        let snap = snapshot
        var out = "{\n \"entries\": {"
        let keys = snap.values.keys.sorted()
        for (i, key) in keys.enumerated() {
            out += i == 0 ? "\n" : ",\n"
            out += "  \"\(JSONText.escape(key))\": {\n"
            out += "   \"final_value\": \"\(JSONText.escape(snap.values[key]!.raw))\",\n"
            out += "   \"layer_values\": ["
            for (j, layer) in snap.layers.enumerated() {
                out += (j == 0 ? "\n" : ",\n") + "    \"\(JSONText.escape(layer.values[key]?.raw ?? ""))\""
            }
            out += snap.layers.isEmpty ? "]\n  }" : "\n   ]\n  }"
        }
        out += keys.isEmpty ? "},\n" : "\n },\n"
        out += " \"layers\": ["
        for (j, layer) in snap.layers.enumerated() {
            out += (j == 0 ? "\n" : ",\n") + "  \"\(JSONText.escape(layer.name))\""
        }
        out += snap.layers.isEmpty ? "]\n}\n" : "\n ]\n}\n"
        return out
    }
}

/// `envoy.config.core.v3.RuntimeFractionalPercent`: a fraction that the runtime key's value overrides (Envoy's
/// `Runtime::FractionalPercent`, evaluated through `featureEnabled`).
package struct RuntimeFractionalPercent: Sendable, Equatable {
    package var defaultValue: FractionalPercent
    package var runtimeKey: String?

    package static let zero = RuntimeFractionalPercent(defaultValue: .zero, runtimeKey: nil)
    package static let hundred = RuntimeFractionalPercent(defaultValue: .hundred, runtimeKey: nil)

    /// Whether the fraction selects this request; `random` is the request's draw.
    package func evaluate(_ runtime: Runtime?, random: UInt64) -> Bool {
        guard let runtime, let runtimeKey, !runtimeKey.isEmpty else { return defaultValue.evaluate(random) }
        return runtime.snapshot.featureEnabled(runtimeKey, default: defaultValue, random: random)
    }
}
