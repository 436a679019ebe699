/// Decoding of the RBAC filters' `matcher` / `shadow_matcher` (`xds.type.matcher.v3.Matcher`) with the
/// validation Envoy 1.40 applies (checked with `envoy --mode validate`). Every field Pilotfish does not
/// evaluate is an error naming it.
extension RBACMatcher {
    /// `forHTTP`: false for the network filter, which refuses request-header inputs as Envoy does.
    package static func decode(_ value: ConfigValue, forHTTP: Bool) throws -> RBACMatcher {
        let obj = try value.object()
        let tree: Tree
        switch try obj.oneOf(["matcher_list", "matcher_tree"], required: false) {
        case ("matcher_list", let v)?:
            tree = .list(try decodeList(v, forHTTP: forHTTP))
        case (_, let v)?:
            tree = try decodeTree(v, forHTTP: forHTTP)
        case nil:
            tree = .none
        }
        let onNoMatch = try obj.optional("on_no_match").map { try OnMatch.decode($0, forHTTP: forHTTP) }
        try obj.finish()
        return RBACMatcher(tree: tree, onNoMatch: onNoMatch)
    }

    /// `MatcherList`: `matchers`, at least one, each a `predicate` and an `on_match`.
    private static func decodeList(_ value: ConfigValue, forHTTP: Bool) throws -> [FieldMatcher] {
        let obj = try value.object()
        let items = try obj.list("matchers")
        if items.isEmpty {
            throw (obj.optional("matchers") ?? value).error("matchers must contain at least 1 item (as Envoy requires)")
        }
        let matchers = try items.map { item in
            let m = try item.object()
            let predicate = try RBACMatchPredicate.decode(try m.required("predicate"), forHTTP: forHTTP)
            let onMatch = try OnMatch.decode(try m.required("on_match"), forHTTP: forHTTP)
            try m.finish()
            return FieldMatcher(predicate: predicate, onMatch: onMatch)
        }
        try obj.finish()
        return matchers
    }

    /// `MatcherTree`: an `input` and `exact_match_map` or `prefix_match_map` (at least one entry each).
    private static func decodeTree(_ value: ConfigValue, forHTTP: Bool) throws -> Tree {
        let obj = try value.object()
        let input = try RBACMatchInput.decode(try obj.required("input"), forHTTP: forHTTP)
        guard let (key, v) = try obj.oneOf(["exact_match_map", "prefix_match_map", "custom_match"]) else {
            fatalError("unreachable: oneOf is required")
        }
        if key == "custom_match" {
            throw v.error("field 'custom_match' is a valid Envoy field but is not supported by Pilotfish yet")
        }
        let mapObj = try v.object()
        let entries = try mapObj.required("map").map()
        if entries.isEmpty {
            throw (mapObj.optional("map") ?? v).error("map must contain at least 1 pair (as Envoy requires)")
        }
        var decoded: [(prefix: String, onMatch: OnMatch)] = []
        for (k, onMatch) in entries { decoded.append((k, try OnMatch.decode(onMatch, forHTTP: forHTTP))) }
        try mapObj.finish()
        try obj.finish()
        if key == "exact_match_map" {
            return .exact(input, Dictionary(decoded.map { ($0.prefix, $0.onMatch) }, uniquingKeysWith: { _, last in last }))
        }
        // Longest first; equal keys cannot occur in a map.
        return .prefix(input, decoded.sorted { $0.prefix.utf8.count > $1.prefix.utf8.count })
    }
}

extension RBACMatcher.OnMatch {
    /// `OnMatch`: a nested `matcher` or an `action` (an `envoy.config.rbac.v3.Action`). `keep_matching: true`
    /// is refused, as Envoy's RBAC filters refuse it.
    package static func decode(_ value: ConfigValue, forHTTP: Bool) throws -> RBACMatcher.OnMatch {
        let obj = try value.object()
        if let keep = obj.optional("keep_matching"), try keep.bool() {
            throw keep.error("keep_matching is not supported in this context (as in Envoy's RBAC filters)")
        }
        guard let (key, v) = try obj.oneOf(["matcher", "action"]) else { fatalError("unreachable: oneOf is required") }
        let onMatch: RBACMatcher.OnMatch
        if key == "matcher" {
            onMatch = .matcher(try RBACMatcher.decode(v, forHTTP: forHTTP))
        } else {
            onMatch = .action(try RBACMatchAction.decode(v))
        }
        try obj.finish()
        return onMatch
    }
}
