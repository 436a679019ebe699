/// `xds.type.matcher.v3.Matcher.MatcherList.Predicate`: a single predicate on one input, or `and_matcher` /
/// `or_matcher` (at least two each) and `not_matcher`.
package indirect enum RBACMatchPredicate: Sendable {
    case single(RBACMatchInput, RBACInputMatcher)
    case and([RBACMatchPredicate])
    case or([RBACMatchPredicate])
    case not(RBACMatchPredicate)

    /// Envoy's field matchers (source/common/matcher/field_matcher.h), three-valued because an input may be
    /// unavailable: `and` stops at the first predicate that is false or undecided, in order; `or` is true when
    /// any predicate is, else undecided when one was, else false; `not` leaves undecided as it is.
    package func evaluate(_ request: RBACRequest, ipParsingFailed: (String) -> Void) -> RBACMatchState {
        switch self {
        case .single(let input, let matcher):
            let value = input.read(request)
            if value == .notAvailable { return .undecided }
            return matcher.matches(value, ipParsingFailed: ipParsingFailed) ? .matched : .unmatched
        case .and(let predicates):
            for p in predicates {
                let state = p.evaluate(request, ipParsingFailed: ipParsingFailed)
                if state != .matched { return state }
            }
            return .matched
        case .or(let predicates):
            var undecided = false
            for p in predicates {
                switch p.evaluate(request, ipParsingFailed: ipParsingFailed) {
                case .matched: return .matched
                case .undecided: undecided = true
                case .unmatched: break
                }
            }
            return undecided ? .undecided : .unmatched
        case .not(let predicate):
            switch predicate.evaluate(request, ipParsingFailed: ipParsingFailed) {
            case .matched: return .unmatched
            case .unmatched: return .matched
            case .undecided: return .undecided
            }
        }
    }

    /// Every input the predicate reads, depth first.
    package var inputs: [RBACMatchInput] {
        switch self {
        case .single(let input, _): return [input]
        case .and(let ps), .or(let ps): return ps.flatMap(\.inputs)
        case .not(let p): return p.inputs
        }
    }

    /// Every input matcher in the predicate, depth first.
    package var inputMatchers: [RBACInputMatcher] {
        switch self {
        case .single(_, let matcher): return [matcher]
        case .and(let ps), .or(let ps): return ps.flatMap(\.inputMatchers)
        case .not(let p): return p.inputMatchers
        }
    }
}

/// A predicate's answer: Envoy's `FieldMatchResult` (`MatchComplete` with true or false, or `UnableToMatch`).
package enum RBACMatchState: Sendable, Equatable {
    case matched
    case unmatched
    /// Some input was not available (a TLS input on a plaintext connection).
    case undecided
}
