/// `envoy.config.rbac.v3.RBAC`: an action and named policies. The pure engine: Envoy's
/// `RoleBasedAccessControlEngineImpl` with its `ALLOW` and `DENY` actions.
public struct RBACRules: Sendable {
    public enum Action: String, Sendable, CaseIterable {
        /// Allowed if and only if some policy matches (a safe-list).
        case ALLOW
        /// Allowed if and only if no policy matches (a block-list).
        case DENY
    }

    public var action: Action
    /// In lexicographic order of name, the order Envoy evaluates them in (it matters only for which policy
    /// is reported as the match).
    package var policies: [RBACPolicy]

    package init(action: Action, policies: [RBACPolicy]) {
        self.action = action
        self.policies = policies.sorted { $0.name < $1.name }
    }

    /// The first policy (by name) that matches the request.
    package func matchingPolicy(_ request: RBACRequest) -> RBACPolicy? {
        for policy in policies where policy.matches(request) { return policy }
        return nil
    }

    package func allows(_ request: RBACRequest) -> Bool {
        let matched = matchingPolicy(request) != nil
        switch action {
        case .ALLOW: return matched
        case .DENY: return !matched
        }
    }

    /// Some principal reads the XFF-derived remote address.
    package var usesRemoteIP: Bool { policies.contains { $0.principals.contains { $0.usesRemoteIP } } }
}

/// `envoy.config.rbac.v3.Policy`: it matches when at least one permission and at least one principal do.
package struct RBACPolicy: Sendable {
    package var name: String
    package var permissions: [RBACPermission]
    package var principals: [RBACPrincipal]

    package func matches(_ request: RBACRequest) -> Bool {
        var permitted = false
        for p in permissions where p.matches(request) {
            permitted = true
            break
        }
        guard permitted else { return false }
        for p in principals where p.matches(request) { return true }
        return false
    }
}
