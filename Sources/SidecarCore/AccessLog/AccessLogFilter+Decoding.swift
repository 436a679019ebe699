extension AccessLogFilter {
    /// The filters Pilotfish evaluates; the other `filter_specifier`s of Envoy 1.40 are refused by name.
    static let supported = [
        "status_code_filter", "duration_filter", "not_health_check_filter", "response_flag_filter", "runtime_filter",
        "and_filter", "or_filter",
    ]
    static let envoyOnly = [
        "traceable_filter", "header_filter", "grpc_status_filter", "extension_filter", "metadata_filter",
        "log_type_filter",
    ]

    /// `envoy.config.accesslog.v3.AccessLogFilter`, with Envoy's validation (a filter is required; and/or need two
    /// filters; a comparison needs a value; response flags must be Envoy's short names).
    package static func decode(_ value: ConfigValue) throws -> AccessLogFilter {
        let obj = try value.object()
        try obj.unsupported(envoyOnly)
        guard let (key, chosen) = try obj.oneOf(supported + envoyOnly, required: false) else {
            throw value.error(
                "an access log filter needs one of: \(supported.joined(separator: ", ")) (Envoy: filter_specifier is required)")
        }
        let filter: AccessLogFilter
        switch key {
        case "status_code_filter":
            filter = .statusCode(try decodeComparisonHolder(chosen))
        case "duration_filter":
            filter = .duration(try decodeComparisonHolder(chosen))
        case "not_health_check_filter":
            try chosen.object().finish()
            filter = .notHealthCheck
        case "response_flag_filter":
            let o = try chosen.object()
            var flags = Set<ResponseFlag>()
            for item in try o.list("flags") {
                let name = try item.string()
                guard let flag = ResponseFlag.named(short: name) else {
                    throw item.error("response flag '\(name)' is not one of Envoy's: "
                        + ResponseFlag.names.map(\.short).joined(separator: " "))
                }
                flags.insert(flag)
            }
            try o.finish()
            filter = .responseFlag(flags)
        case "runtime_filter":
            let o = try chosen.object()
            let keyValue = try o.required("runtime_key")
            let runtimeKey = try keyValue.string()
            if runtimeKey.isEmpty { throw keyValue.error("runtime_key must not be empty") }
            let percent = try o.optional("percent_sampled").map(FractionalPercent.decode) ?? .zero
            let independent = try o.optional("use_independent_randomness")?.bool() ?? false
            try o.finish()
            filter = .runtime(RuntimeSample(runtimeKey: runtimeKey, percent: percent,
                                            useIndependentRandomness: independent))
        case "and_filter", "or_filter":
            let o = try chosen.object()
            let listValue = try o.required("filters")
            let items = try listValue.array()
            if items.count < 2 { throw listValue.error("\(key) needs at least 2 filters (Envoy's validation)") }
            let filters = try items.map(decode)
            try o.finish()
            filter = key == "and_filter" ? .and(filters) : .or(filters)
        default:
            // Refused above by `unsupported`; reached only when a decoding session defers that error.
            throw chosen.error("access log filter '\(key)' is not supported by Pilotfish yet")
        }
        try obj.finish()
        return filter
    }

    /// `StatusCodeFilter` / `DurationFilter`: `{comparison: {op, value: {default_value, runtime_key}}}`.
    private static func decodeComparisonHolder(_ value: ConfigValue) throws -> Comparison {
        let holder = try value.object()
        let cv = try holder.required("comparison")
        let c = try cv.object()
        let op = try c.optional("op")?.enumValue(Comparison.Op.self) ?? .EQ
        let v = try c.required("value").object()
        let defaultValue = UInt64(try v.optional("default_value")?.uint32() ?? 0)
        let runtimeKey = try v.optional("runtime_key")?.string()
        try v.finish()
        try c.finish()
        try holder.finish()
        return Comparison(op: op, defaultValue: defaultValue, runtimeKey: runtimeKey?.isEmpty == true ? nil : runtimeKey)
    }
}

extension ResponseFlag {
    /// The flag whose short name (`UH`, `URX`, ...) is `name`, as `response_flag_filter` lists them.
    package static func named(short name: String) -> ResponseFlag? {
        names.firstIndex { $0.short == name }.flatMap { ResponseFlag(rawValue: $0) }
    }
}
