/// `xds.type.matcher.v3.Matcher` as the RBAC filters' `matcher` / `shadow_matcher`: a pure value, evaluated
/// against one `RBACRequest`, that ends in an `envoy.config.rbac.v3.Action` or in none (then the request is
/// denied, as Envoy's `RoleBasedAccessControlMatcherEngineImpl` defaults to DENY).
public struct RBACMatcher: Sendable {
    package enum Tree: Sendable {
        /// No `matcher_list` or `matcher_tree`: only `on_no_match` applies.
        case none
        /// `matcher_list`: predicates tried in order.
        case list([FieldMatcher])
        /// `matcher_tree` with `exact_match_map`.
        case exact(RBACMatchInput, [String: OnMatch])
        /// `matcher_tree` with `prefix_match_map`, longest prefix first.
        case prefix(RBACMatchInput, [(prefix: String, onMatch: OnMatch)])
    }

    /// `FieldMatcher`: a predicate and what follows when it matches.
    package struct FieldMatcher: Sendable {
        package var predicate: RBACMatchPredicate
        package var onMatch: OnMatch
    }

    /// `OnMatch`: an action, or a nested matcher.
    package indirect enum OnMatch: Sendable {
        case action(RBACMatchAction)
        case matcher(RBACMatcher)
    }

    /// What evaluation ends in: Envoy's `MatchResult`.
    package enum Outcome: Sendable, Equatable {
        case action(RBACMatchAction)
        /// Nothing matched and there is no `on_no_match`.
        case noMatch
        /// An input was not available: Envoy's `UnableToMatch`, which the RBAC engine denies.
        case undecided
    }

    package var tree: Tree
    package var onNoMatch: OnMatch?

    package init(tree: Tree, onNoMatch: OnMatch?) {
        self.tree = tree
        self.onNoMatch = onNoMatch
    }

    /// Envoy 1.40's evaluation (checked against it): the first field matcher whose predicate matches decides;
    /// when its `on_match` is a nested matcher that matches nothing, the next field matcher is tried, then
    /// `on_no_match`. An exact map takes the entry equal to the input; a prefix map tries the entries that
    /// are prefixes of the input, longest first, moving on when a nested matcher matches nothing; then
    /// `on_no_match` (also when the input is absent). An unavailable input ends everything undecided.
    package func evaluate(_ request: RBACRequest, ipParsingFailed: (String) -> Void) -> Outcome {
        switch tree {
        case .none:
            break
        case .list(let matchers):
            for m in matchers {
                switch m.predicate.evaluate(request, ipParsingFailed: ipParsingFailed) {
                case .undecided: return .undecided
                case .unmatched: continue
                case .matched:
                    let outcome = m.onMatch.evaluate(request, ipParsingFailed: ipParsingFailed)
                    if outcome != .noMatch { return outcome }
                }
            }
        case .exact(let input, let map):
            switch input.read(request) {
            case .notAvailable:
                return .undecided
            case .absent:
                break
            case .text(let key):
                if let outcome = map[key]?.evaluate(request, ipParsingFailed: ipParsingFailed), outcome != .noMatch {
                    return outcome
                }
            case .address(let address):
                if let outcome = map[address.text]?.evaluate(request, ipParsingFailed: ipParsingFailed),
                    outcome != .noMatch
                {
                    return outcome
                }
            }
        case .prefix(let input, let entries):
            let key: String
            switch input.read(request) {
            case .notAvailable: return .undecided
            case .absent: return onNoMatch?.evaluate(request, ipParsingFailed: ipParsingFailed) ?? .noMatch
            case .text(let text): key = text
            case .address(let address): key = address.text
            }
            for entry in entries where key.utf8.starts(with: entry.prefix.utf8) {
                let outcome = entry.onMatch.evaluate(request, ipParsingFailed: ipParsingFailed)
                if outcome != .noMatch { return outcome }
            }
        }
        return onNoMatch?.evaluate(request, ipParsingFailed: ipParsingFailed) ?? .noMatch
    }

    /// Whether the request is allowed: the action's answer; denied without one (no match, or undecided).
    package func allows(_ request: RBACRequest, ipParsingFailed: (String) -> Void = { _ in }) -> Bool {
        if case .action(let action) = evaluate(request, ipParsingFailed: ipParsingFailed) { return action.allows }
        return false
    }

    /// Every input the tree reads.
    package var inputs: [RBACMatchInput] {
        var out: [RBACMatchInput] = []
        switch tree {
        case .none: break
        case .list(let ms): out = ms.flatMap { $0.predicate.inputs + $0.onMatch.inputs }
        case .exact(let input, let map): out = [input] + map.values.flatMap(\.inputs)
        case .prefix(let input, let entries): out = [input] + entries.flatMap(\.onMatch.inputs)
        }
        return out + (onNoMatch?.inputs ?? [])
    }

    /// The stat prefixes of every `Ip` matcher in the tree (their `ip_parsing_failed` counters).
    package var ipStatPrefixes: [String] {
        var out: [String] = []
        switch tree {
        case .none: break
        case .list(let ms):
            out = ms.flatMap { $0.predicate.inputMatchers.compactMap(\.ipStatPrefix) + $0.onMatch.ipStatPrefixes }
        case .exact(_, let map): out = map.values.flatMap(\.ipStatPrefixes)
        case .prefix(_, let entries): out = entries.flatMap(\.onMatch.ipStatPrefixes)
        }
        return out + (onNoMatch?.ipStatPrefixes ?? [])
    }

    /// Some input reads the address `x-forwarded-for` may replace.
    package var usesRemoteIP: Bool { inputs.contains { $0.usesRemoteIP } }
}

extension RBACMatcher.OnMatch {
    package func evaluate(_ request: RBACRequest, ipParsingFailed: (String) -> Void) -> RBACMatcher.Outcome {
        switch self {
        case .action(let action): return .action(action)
        case .matcher(let matcher): return matcher.evaluate(request, ipParsingFailed: ipParsingFailed)
        }
    }

    package var inputs: [RBACMatchInput] {
        if case .matcher(let m) = self { return m.inputs }
        return []
    }

    package var ipStatPrefixes: [String] {
        if case .matcher(let m) = self { return m.ipStatPrefixes }
        return []
    }
}
