/// What a single predicate does with its input's value: `value_match` (a string matcher) or the `Ip`
/// `custom_match`. Neither matches an absent value.
package enum RBACInputMatcher: Sendable {
    /// `xds.type.matcher.v3.StringMatcher`.
    case string(StringMatcher)
    /// `envoy.extensions.matching.input_matchers.ip.v3.Ip`: the value is an address in one of the ranges. A
    /// text value that is not an address does not match and counts `<statPrefix>.ip_parsing_failed`.
    case ip(ranges: [IPRange], statPrefix: String)

    /// `ipParsingFailed` is told the stat prefix of an `Ip` matcher whose input was not an address.
    package func matches(_ value: RBACInputValue, ipParsingFailed: (String) -> Void) -> Bool {
        switch (self, value) {
        case (_, .absent), (_, .notAvailable):
            return false
        case (.string(let matcher), .text(let text)):
            return matcher.matches(text)
        case (.string(let matcher), .address(let address)):
            return matcher.matches(address.text)
        case (.ip(let ranges, _), .address(let address)):
            return ranges.contains { $0.contains(address) }
        case (.ip(let ranges, let statPrefix), .text(let text)):
            guard let address = IPAddress(parsing: text) else {
                ipParsingFailed(statPrefix)
                return false
            }
            return ranges.contains { $0.contains(address) }
        }
    }

    /// The `Ip` matcher's stat prefix, if it is one.
    package var ipStatPrefix: String? {
        if case .ip(_, let statPrefix) = self { return statPrefix }
        return nil
    }
}
