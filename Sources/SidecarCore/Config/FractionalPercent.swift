/// `envoy.type.v3.FractionalPercent`: numerator over HUNDRED, TEN_THOUSAND or MILLION.
public struct FractionalPercent: Sendable, Equatable {
    public var numerator: UInt64
    public var denominator: UInt64

    package init(numerator: UInt64, denominator: UInt64) {
        self.numerator = numerator
        self.denominator = denominator
    }

    public static let zero = FractionalPercent(numerator: 0, denominator: 100)
    public static let hundred = FractionalPercent(numerator: 100, denominator: 100)

    /// Envoy's `ProtobufPercentHelper::evaluateFractionalPercent`: `random % denominator < numerator`.
    package func evaluate(_ random: UInt64) -> Bool {
        numerator >= denominator || random % denominator < numerator
    }

    package static func decode(_ value: ConfigValue) throws -> FractionalPercent {
        let obj = try value.object()
        let numerator = UInt64(try obj.optional("numerator")?.uint32() ?? 0)
        var denominator: UInt64 = 100
        if let d = obj.optional("denominator") {
            switch try d.string() {
            case "HUNDRED": denominator = 100
            case "TEN_THOUSAND": denominator = 10_000
            case "MILLION": denominator = 1_000_000
            default: throw d.error("denominator must be HUNDRED, TEN_THOUSAND or MILLION")
            }
        }
        try obj.finish()
        return FractionalPercent(numerator: numerator, denominator: denominator)
    }

    /// `envoy.config.core.v3.RuntimeFractionalPercent`: its `default_value`, and the `runtime_key` whose value
    /// overrides it (see `RuntimeFractionalPercent.evaluate`).
    package static func decodeRuntime(_ value: ConfigValue) throws -> RuntimeFractionalPercent {
        let obj = try value.object()
        let v = try FractionalPercent.decode(try obj.required("default_value"))
        let key = try obj.optional("runtime_key")?.string()
        try obj.finish()
        return RuntimeFractionalPercent(defaultValue: v, runtimeKey: key)
    }
}
