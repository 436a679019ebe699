import SidecarCore

/// Judges a health check's answer. Pure, so the rules are tested without sockets.
package enum HealthCheckVerdict {
    /// An HTTP check passes when the status is in one of `expected_statuses` (half-open ranges, default
    /// `[200, 201)`); anything else, a 503 included, is a failure (Envoy's `HttpStatusChecker::inExpectedRanges`
    /// in source/extensions/health_checkers/http/health_checker_impl.cc).
    package static func http(status: Int, config: HealthCheckConfig.HTTP) -> Bool {
        config.expectedStatuses.contains { $0.contains(status) }
    }

    /// A TCP check passes when every `receive` block is found in what the host sent so far, each after the
    /// end of the previous one (Envoy's `PayloadMatcher::match`, used by `TcpActiveHealthCheckSession::onData`).
    /// No blocks: nothing to wait for, the connect alone decides. A partial answer is not a failure yet: the
    /// caller keeps reading until the blocks appear or `timeout` fires, as Envoy cannot tell "wrong" from
    /// "not enough" either.
    package static func tcp(received: [UInt8], config: HealthCheckConfig.TCP) -> Bool {
        var start = received.startIndex
        for block in config.receive where !block.isEmpty {
            guard let found = endOfFirstMatch(of: block, in: received, from: start) else { return false }
            start = found
        }
        return true
    }

    /// The index just past the first occurrence of `needle` in `haystack[from...]`.
    private static func endOfFirstMatch(of needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard needle.count <= haystack.count - from else { return nil }
        var i = from
        while i + needle.count <= haystack.count {
            if haystack[i] == needle[0] && haystack[i..<(i + needle.count)].elementsEqual(needle) {
                return i + needle.count
            }
            i += 1
        }
        return nil
    }
}
