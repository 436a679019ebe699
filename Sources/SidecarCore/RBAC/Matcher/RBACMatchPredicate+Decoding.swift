extension RBACMatchPredicate {
    /// `Predicate`: exactly one of `single_predicate`, `or_matcher`, `and_matcher` (at least two predicates
    /// each) and `not_matcher`.
    package static func decode(_ value: ConfigValue, forHTTP: Bool) throws -> RBACMatchPredicate {
        let obj = try value.object()
        let keys = ["single_predicate", "or_matcher", "and_matcher", "not_matcher"]
        guard let (key, v) = try obj.oneOf(keys) else { fatalError("unreachable: oneOf is required") }
        let predicate: RBACMatchPredicate
        switch key {
        case "single_predicate": predicate = try decodeSingle(v, forHTTP: forHTTP)
        case "or_matcher": predicate = .or(try decodeList(v, forHTTP: forHTTP))
        case "and_matcher": predicate = .and(try decodeList(v, forHTTP: forHTTP))
        default: predicate = .not(try decode(v, forHTTP: forHTTP))
        }
        try obj.finish()
        return predicate
    }

    /// `SinglePredicate`: an `input` and `value_match` or `custom_match`.
    private static func decodeSingle(_ value: ConfigValue, forHTTP: Bool) throws -> RBACMatchPredicate {
        let obj = try value.object()
        let input = try RBACMatchInput.decode(try obj.required("input"), forHTTP: forHTTP)
        guard let (key, v) = try obj.oneOf(["value_match", "custom_match"]) else {
            fatalError("unreachable: oneOf is required")
        }
        let matcher = key == "value_match"
            ? try RBACInputMatcher.decodeValueMatch(v) : try RBACInputMatcher.decodeCustomMatch(v)
        try obj.finish()
        return .single(input, matcher)
    }

    /// `PredicateList`: `predicate`, at least two.
    private static func decodeList(_ value: ConfigValue, forHTTP: Bool) throws -> [RBACMatchPredicate] {
        let obj = try value.object()
        let items = try obj.list("predicate")
        if items.count < 2 {
            throw (obj.optional("predicate") ?? value).error(
                "predicate must contain at least 2 items (as Envoy requires)")
        }
        let predicates = try items.map { try decode($0, forHTTP: forHTTP) }
        try obj.finish()
        return predicates
    }
}
