/// What one RBAC filter enforces (or shadows): `rules` or a `matcher`. As in Envoy's `createEngine`, a
/// matcher wins when both are configured (Envoy logs "RBAC rules are ignored when matcher is configured").
package enum RBACEngine: Sendable {
    case rules(RBACRules)
    case matcher(RBACMatcher)

    package init?(rules: RBACRules?, matcher: RBACMatcher?) {
        if let matcher {
            self = .matcher(matcher)
        } else if let rules {
            self = .rules(rules)
        } else {
            return nil
        }
    }

    /// `ipParsingFailed` is told the stat prefix of an `Ip` matcher whose input was not an address.
    package func allows(_ request: RBACRequest, ipParsingFailed: (String) -> Void) -> Bool {
        switch self {
        case .rules(let rules): return rules.allows(request)
        case .matcher(let matcher): return matcher.allows(request, ipParsingFailed: ipParsingFailed)
        }
    }

    package var usesRemoteIP: Bool {
        switch self {
        case .rules(let rules): return rules.usesRemoteIP
        case .matcher(let matcher): return matcher.usesRemoteIP
        }
    }

    package var ipStatPrefixes: [String] {
        if case .matcher(let matcher) = self { return matcher.ipStatPrefixes }
        return []
    }
}
