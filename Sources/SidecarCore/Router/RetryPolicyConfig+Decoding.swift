/// Decoding of a route's or virtual host's `retry_policy` and a route's `hash_policy`, with the rules of
/// Envoy 1.40's `route_components.proto` and `RetryPolicyImpl`.
extension RetryPolicyConfig {
    package static let previousHostsName = "envoy.retry_host_predicates.previous_hosts"
    package static let previousHostsType =
        "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"

    package static func decode(_ value: ConfigValue) throws -> RetryPolicyConfig {
        let obj = try value.object()
        try obj.unsupported([
            "retry_priority", "retry_options_predicates", "rate_limited_retry_back_off", "refresh_cluster_on_retry",
        ])
        var policy = RetryPolicyConfig()
        if let v = obj.optional("retry_on") {
            // Envoy 1.40 ignores a condition it does not know; a misspelt condition silently disables the retry
            // it was meant to allow, so we refuse it.
            let (conditions, unknown) = RetryOn.parse(Substring(try v.string()))
            if let name = unknown.first {
                let known = RetryOn.names.map(\.0).joined(separator: ", ")
                throw v.error("unknown retry_on condition '\(name)'; expected a comma-separated list of: \(known)")
            }
            policy.retryOn = conditions
        }
        if let v = obj.optional("num_retries") { policy.numRetries = try v.uint32Int() }
        // Zero or unset: no per-try limit (Envoy's default).
        if let v = obj.optional("per_try_timeout") { policy.perTryTimeout = try v.duration().nonZero }
        if let v = obj.optional("per_try_idle_timeout") { policy.perTryIdleTimeout = try v.duration().nonZero }
        if let v = obj.optional("retry_back_off") { try policy.decodeBackOff(v) }
        for item in try obj.list("retry_host_predicate") {
            try decodeHostPredicate(item)
            policy.avoidPreviousHosts = true
        }
        if let v = obj.optional("host_selection_retry_max_attempts") {
            // An int64 in the proto that Envoy narrows to 32 bits; a negative count has no meaning, so we refuse it.
            policy.hostSelectionRetryMaxAttempts = Int(try v.int(min: 0, max: Int64(UInt32.max)))
        }
        policy.retriableStatusCodes = try obj.list("retriable_status_codes").map { try $0.uint32Int() }
        policy.retriableHeaders = try obj.list("retriable_headers").map(HeaderMatcher.decode)
        policy.retriableRequestHeaders = try obj.list("retriable_request_headers").map(HeaderMatcher.decode)
        try obj.finish()
        return policy
    }

    /// `retry_back_off`: `base_interval` is required and above zero; `max_interval` is at least the base
    /// (Envoy's RetryPolicyImpl).
    private mutating func decodeBackOff(_ value: ConfigValue) throws {
        let obj = try value.object()
        backOffBase = try obj.required("base_interval").positiveDuration()
        if let v = obj.optional("max_interval") {
            let maxInterval = try v.positiveDuration()
            if maxInterval < backOffBase {
                throw v.error(
                    "max_interval (\(maxInterval)) must be greater than or equal to the base_interval "
                        + "(\(backOffBase))")
            }
            backOffMax = maxInterval
        }
        try obj.finish()
    }

    /// Only the previous-hosts predicate is supported. Envoy picks the predicate by its `typed_config` type and
    /// rejects one without; like the router filter, we accept the seed's bare `name:` form since its intent is
    /// unambiguous.
    private static func decodeHostPredicate(_ value: ConfigValue) throws {
        let obj = try value.object()
        let nameValue = try obj.required("name")
        let name = try nameValue.nonEmptyString()
        if let typed = obj.optional("typed_config") {
            let t = try typed.object()
            let type = try t.required("@type")
            if try type.string() != previousHostsType {
                throw type.error(
                    "retry host predicate '\(try type.string())' is not supported by Pilotfish yet; "
                        + "only \(previousHostsType) is")
            }
            try t.finish()  // PreviousHostsPredicate has no fields.
        } else if name != previousHostsName {
            throw nameValue.error(
                "retry host predicate '\(name)' is not supported by Pilotfish yet; only "
                    + "\(previousHostsName) is")
        }
        try obj.finish()
    }
}

extension HashPolicy {
    /// One `hash_policy` entry, or nil for `connection_properties` without `source_ip`, which hashes nothing:
    /// Envoy skips such an entry too.
    package static func decode(_ value: ConfigValue) throws -> HashPolicy? {
        let obj = try value.object()
        try obj.unsupported(["filter_state"])
        let keys = ["header", "cookie", "connection_properties", "query_parameter"]
        guard let (key, v) = try obj.oneOf(keys) else { fatalError("unreachable: oneOf is required") }
        let terminal = try obj.optional("terminal")?.bool() ?? false
        let inner = try v.object()
        let source: Source?
        switch key {
        case "header":
            try inner.unsupported(["regex_rewrite"])
            source = .header(try inner.required("header_name").nonEmptyString().lowercased())
        case "cookie":
            // Generating the cookie when it is missing (ttl, path, attributes) is not supported.
            try inner.unsupported(["ttl", "path", "attributes"])
            source = .cookie(try inner.required("name").nonEmptyString())
        case "connection_properties":
            source = try inner.optional("source_ip")?.bool() == true ? .sourceIP : nil
        default:
            source = .queryParameter(try inner.required("name").nonEmptyString())
        }
        try inner.finish()
        try obj.finish()
        return source.map { HashPolicy(source: $0, terminal: terminal) }
    }
}

extension ProtoDuration {
    /// Nil for zero, where a zero Duration means "not set".
    fileprivate var nonZero: ProtoDuration? { isZero ? nil : self }
}
