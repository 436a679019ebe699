import Foundation

/// Decoders for the small protobuf and Envoy message types that cluster and route resilience settings are
/// written in, with the validation rules Envoy's `.proto` files attach to them.
extension ConfigValue {
    /// `envoy.type.v3.Percent`: `{ value: 25.0 }`, in [0, 100]. An empty mapping is 0, as in proto3.
    package func percent() throws -> Double {
        let obj = try object()
        let valueField = obj.optional("value")
        let value = try valueField?.double() ?? 0
        if !value.isFinite || value < 0 || value > 100 {
            throw (valueField ?? self).error("\(value) is out of range [0, 100]")
        }
        try obj.finish()
        return value
    }

    /// A `Duration` Envoy validates with `gt {}`: zero is an error, not "disabled".
    package func positiveDuration() throws -> ProtoDuration {
        let d = try duration()
        if d.isZero { throw error("must be greater than 0s") }
        return d
    }

    /// A `UInt32Value` read as `Int`, optionally with a lower and upper bound from the field's rules.
    package func uint32Int(min: Int64 = 0, max: Int64 = Int64(UInt32.max)) throws -> Int {
        Int(try int(min: min, max: max))
    }

    /// A proto3 `bytes` field: base64 in Envoy's YAML and JSON, which (like protobuf's JSON parser) takes
    /// the URL-safe alphabet and missing padding too.
    package func base64Bytes() throws -> [UInt8] {
        let text = try string()
        var normalized = String(text.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        if normalized.utf8.count % 4 != 0 {
            normalized += String(repeating: "=", count: 4 - normalized.utf8.count % 4)
        }
        guard let data = Data(base64Encoded: normalized) else { throw error("'\(text)' is not valid base64") }
        return Array(data)
    }
}
