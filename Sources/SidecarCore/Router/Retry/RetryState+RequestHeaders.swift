import NIOHTTP1

/// The `x-envoy-*` request headers that steer retries (Envoy's router filter docs, "HTTP headers consumed
/// from downstreams"), merged as `RetryStateImpl`'s constructor and `FilterUtility::finalTimeout` merge them.
/// A header sent twice counts as its values joined with ",", as Envoy's header map stores it (two
/// `x-envoy-retry-on` lines add both lists; two `x-envoy-max-retries` lines make "2,3", which is ignored).
/// The parsing rules below were checked against Envoy 1.40 with a trusted loopback client.
extension RetryState {
    /// Headers the router consumes: Envoy removes them from the upstream request whether or not they were
    /// honoured (`RetryStateImpl::create`, `FilterUtility::finalTimeout`).
    package static let consumedRequestHeaders = [
        "x-envoy-retry-on", "x-envoy-retry-grpc-on", "x-envoy-max-retries", "x-envoy-retriable-status-codes",
        "x-envoy-retriable-header-names", "x-envoy-upstream-rq-per-try-timeout-ms", "x-envoy-hedge-on-per-try-timeout",
    ]

    /// The route policy with the request's headers merged in, and the retries the request starts with.
    package static func merge(
        route: RetryPolicyConfig, requestHeaders: HTTPHeaders, honorRequestHeaders: Bool,
        lookup: (String) -> String?
    ) -> (policy: RetryPolicyConfig, retries: UInt32) {
        var policy = route
        var retries = UInt32(clamping: route.numRetries)
        let header: (String) -> String? = { honorRequestHeaders ? joinedValues(requestHeaders, $0) : nil }

        // `x-envoy-retry-on` adds HTTP conditions and `x-envoy-retry-grpc-on` gRPC ones; names are
        // case-sensitive, blanks around commas are trimmed, unknown names are ignored (`parseRetryOn`,
        // `parseRetryGrpcOn`). A gRPC name in `x-envoy-retry-on` is unknown there, and the other way round.
        if let value = header("x-envoy-retry-on") {
            policy.retryOn.formUnion(RetryPolicyConfig.RetryOn.parse(Substring(value)).0.subtracting(.grpcConditions))
        }
        if let value = header("x-envoy-retry-grpc-on") {
            policy.retryOn.formUnion(RetryPolicyConfig.RetryOn.parse(Substring(value)).0.intersection(.grpcConditions))
        }

        // `retriable_request_headers`: a request matching none of them is not retried at all, whatever the
        // headers above asked for.
        if !policy.retriableRequestHeaders.isEmpty
            && !policy.retriableRequestHeaders.contains(where: { $0.matches(lookup) })
        {
            policy.retryOn = []
        }

        // `x-envoy-max-retries` replaces `num_retries`, only when some condition is in effect. Parsed as
        // `absl::SimpleAtoi` into a `uint64_t` ("abc", "-1", "1,2" are ignored; " 2 " and "+2" count) and then
        // stored in the `uint32_t` `retries_remaining_`, so 4294967297 means one retry, as on Envoy 1.40.
        if !policy.retryOn.isEmpty, let value = header("x-envoy-max-retries"), let n = parseUnsigned(Substring(value)) {
            retries = UInt32(truncatingIfNeeded: n)
        }
        policy.numRetries = Int(retries)

        // `x-envoy-retriable-status-codes` adds to `retriable_status_codes`; entries that are not unsigned
        // 32-bit numbers are skipped.
        if let value = header("x-envoy-retriable-status-codes") {
            for token in value.split(separator: ",") {
                if let code = parseUnsigned(token), code <= UInt64(UInt32.max) {
                    policy.retriableStatusCodes.append(Int(code))
                }
            }
        }

        // `x-envoy-retriable-header-names` adds name-only matchers (the header must be present).
        if let value = header("x-envoy-retriable-header-names") {
            for token in value.split(separator: ",") {
                let name = trimmingASCIIWhitespace(token).lowercased()
                if name.isEmpty { continue }
                policy.retriableHeaders.append(
                    HeaderMatcher(name: name, rule: .present(true), invert: false, treatMissingAsEmpty: false))
            }
        }

        policy.perTryTimeout = perTryTimeoutOverride(route: route, header: header)
        return (policy, retries)
    }

    /// The per-try timeout of a request, `FilterUtility::finalTimeout`: the policy's `per_try_timeout`,
    /// replaced by a trusted `x-envoy-upstream-rq-per-try-timeout-ms` (0 turns it off), and dropped when it is
    /// not shorter than a non-zero global timeout (then the global timeout bounds the try alone). Applies to
    /// every request, with or without a retry state.
    package static func perTryTimeout(
        route: RetryPolicyConfig?, requestHeaders: HTTPHeaders, honorRequestHeaders: Bool,
        globalTimeout: ProtoDuration
    ) -> ProtoDuration? {
        let header: (String) -> String? = { honorRequestHeaders ? joinedValues(requestHeaders, $0) : nil }
        guard let perTry = perTryTimeoutOverride(route: route ?? RetryPolicyConfig(), header: header) else {
            return nil
        }
        if !globalTimeout.isZero && perTry >= globalTimeout { return nil }
        return perTry
    }

    /// The policy's per-try timeout after the request header, before the comparison with the global timeout.
    private static func perTryTimeoutOverride(route: RetryPolicyConfig, header: (String) -> String?)
        -> ProtoDuration?
    {
        var perTry = route.perTryTimeout
        if let value = header("x-envoy-upstream-rq-per-try-timeout-ms"), let ms = parseUnsigned(Substring(value)) {
            let nanos = ms > UInt64(Int64.max / 1_000_000) ? Int64.max : Int64(ms) * 1_000_000
            perTry = ms == 0 ? nil : ProtoDuration(nanoseconds: nanos)
        }
        if let p = perTry, p.isZero { return nil }
        return perTry
    }

    /// `absl::SimpleAtoi` into an unsigned integer: decimal digits with an optional `+`, blanks around them
    /// allowed; a sign `-`, any other character or an overflow fails.
    package static func parseUnsigned(_ text: Substring) -> UInt64? {
        var digits = trimmingASCIIWhitespace(text).utf8[...]
        if digits.first == UInt8(ascii: "+") { digits = digits.dropFirst() }
        guard !digits.isEmpty else { return nil }
        var n: UInt64 = 0
        for c in digits {
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
            let (times10, o1) = n.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(c - UInt8(ascii: "0")))
            if o1 || o2 { return nil }
            n = sum
        }
        return n
    }

    /// `absl::StripAsciiWhitespace`.
    package static func trimmingASCIIWhitespace(_ text: Substring) -> Substring {
        let isSpace: (Character) -> Bool = { " \t\n\u{0B}\u{0C}\r".contains($0) }
        guard let start = text.firstIndex(where: { !isSpace($0) }) else { return "" }
        let end = text.lastIndex(where: { !isSpace($0) })!
        return text[start...end]
    }
}

extension RetryPolicyConfig.RetryOn {
    /// The conditions that look at `grpc-status`; `x-envoy-retry-grpc-on` sets only these, `x-envoy-retry-on`
    /// only the others.
    package static let grpcConditions: Self = [
        .grpcCancelled, .grpcDeadlineExceeded, .grpcInternal, .grpcResourceExhausted, .grpcUnavailable,
    ]
}
