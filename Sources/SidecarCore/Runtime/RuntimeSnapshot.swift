import Atomics
import Foundation
import Yams

/// One runtime value, as Envoy's `SnapshotImpl::Entry` keeps it: the text it was given and what that text parses
/// as, decided once when the value is loaded (`resolveEntryType`).
package struct RuntimeEntry: Sendable, Equatable {
    /// What `/runtime` shows.
    package let raw: String
    package let bool: Bool?
    package let uint: UInt64?
    package let double: Double?
    package let fractionalPercent: FractionalPercent?

    /// A value given as text (admin layer, and scalars of a static layer): Envoy's `resolveEntryType`.
    /// - an integer ("0", "42") is a boolean (non-zero: true) and a number;
    /// - "true" / "false" (any case) is a boolean only;
    /// - a number >= 0 is a double and, truncated, an unsigned integer ("50.9" → 50);
    /// - anything else may be a FractionalPercent written as YAML or JSON (`{numerator: 5, denominator: MILLION}`).
    package init(raw: String) {
        self.raw = raw
        let stripped = raw.trimmingCharacters(in: .whitespaces)
        let lower = stripped.lowercased()
        if Self.simpleAtoi(stripped) == nil && (lower == "true" || lower == "false") {
            bool = lower == "true"
            uint = nil
            double = nil
            fractionalPercent = nil
            return
        }
        bool = Self.simpleAtoi(stripped).map { $0 != 0 }
        // absl::SimpleAtod: decimal or exponent notation, "inf" and "nan"; no hexadecimal.
        let d = lower.contains("x") ? nil : Double(stripped)
        double = d
        if let d, d >= 0, d <= 18_446_744_073_709_551_615.0 {
            uint = d >= 18_446_744_073_709_551_615.0 ? UInt64.max : UInt64(d)
            fractionalPercent = nil
        } else {
            uint = nil
            fractionalPercent = Self.parseFractionalPercent(raw)
        }
    }

    /// A mapping of a static layer that Envoy keeps as one value: a FractionalPercent (`numerator` /
    /// `denominator`), or an empty mapping. `raw` is what `/runtime` shows for it.
    package init(raw: String, fractionalPercent: FractionalPercent?) {
        self.raw = raw
        self.bool = nil
        self.uint = nil
        self.double = nil
        self.fractionalPercent = fractionalPercent
    }

    /// absl::SimpleAtoi into a uint64: optional surrounding whitespace (already stripped) and '+', decimal digits.
    private static func simpleAtoi(_ s: String) -> UInt64? {
        var t = Substring(s)
        if t.first == "+" { t = t.dropFirst() }
        guard !t.isEmpty, t.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return UInt64(t)
    }

    /// Envoy's `parseEntryFractionalPercentValue`: the text as a FractionalPercent message in YAML (or JSON), with
    /// strict validation; nil when it is not one.
    package static func parseFractionalPercent(_ text: String) -> FractionalPercent? {
        guard let node = try? ConfigDocument.parse(text) else { return nil }
        return fractionalPercent(ConfigValue(node: node, path: ""))
    }

    /// A mapping as an `envoy.type.v3.FractionalPercent`: `numerator` (uint32) and `denominator` (HUNDRED,
    /// TEN_THOUSAND, MILLION or their numbers 0, 1, 2); nil for anything else (an unknown field included).
    package static func fractionalPercent(_ value: ConfigValue) -> FractionalPercent? {
        guard let fields = try? value.map() else { return nil }
        var p = FractionalPercent(numerator: 0, denominator: 100)
        for (key, v) in fields {
            switch key {
            case "numerator":
                guard let n = try? v.uint32() else { return nil }
                p.numerator = UInt64(n)
            case "denominator":
                switch try? v.string() {
                case "HUNDRED", "0": p.denominator = 100
                case "TEN_THOUSAND", "1": p.denominator = 10_000
                case "MILLION", "2": p.denominator = 1_000_000
                default: return nil
                }
            default:
                return nil
            }
        }
        return p
    }
}

/// One layer of the runtime as a snapshot holds it.
package struct RuntimeLayerValues: Sendable {
    package let name: String
    package let values: [String: RuntimeEntry]
}

/// The runtime at one moment: every layer's values and the merged view (later layers override earlier ones), as
/// Envoy's `SnapshotImpl`. Immutable: a change makes a new snapshot, which `Runtime` swaps in atomically, so
/// workers read it without a lock.
package final class RuntimeSnapshot: AtomicReference, Sendable {
    package let layers: [RuntimeLayerValues]
    package let values: [String: RuntimeEntry]

    package init(layers: [RuntimeLayerValues]) {
        self.layers = layers
        var merged: [String: RuntimeEntry] = [:]
        for layer in layers {
            for (k, v) in layer.values { merged[k] = v }
        }
        values = merged
    }

    package static let empty = RuntimeSnapshot(layers: [])

    package func entry(_ key: String?) -> RuntimeEntry? {
        // Most proxies run without runtime overrides: no key is hashed then.
        guard let key, !values.isEmpty, !key.isEmpty else { return nil }
        return values[key]
    }

    /// Envoy's `SnapshotImpl::featureEnabled(key, FractionalPercent default, random)`: the key's value as a
    /// FractionalPercent, else as an integer percentage (out of 100; above 100 always enabled), else the default;
    /// then `random % denominator < numerator`.
    package func featureEnabled(_ key: String?, default defaultValue: FractionalPercent, random: UInt64) -> Bool {
        var percent = defaultValue
        if let e = entry(key) {
            if let fp = e.fractionalPercent {
                percent = fp
            } else if let u = e.uint {
                if u > 100 { return true }
                percent = FractionalPercent(numerator: u, denominator: 100)
            }
        }
        return random % percent.denominator < percent.numerator
    }

    /// Envoy's `getInteger`: the key's unsigned integer value, else the default.
    package func integer(_ key: String?, default defaultValue: UInt64) -> UInt64 {
        entry(key)?.uint ?? defaultValue
    }

    /// Envoy's `getBoolean`: the key's boolean value ("true"/"false", or an integer), else the default.
    package func boolean(_ key: String?, default defaultValue: Bool) -> Bool {
        entry(key)?.bool ?? defaultValue
    }
}
