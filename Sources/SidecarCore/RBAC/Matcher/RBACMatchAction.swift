/// `envoy.config.rbac.v3.Action`, the only action an RBAC match tree may end in: a name (Envoy's effective
/// policy id) and whether the request or connection is allowed. `LOG` is refused at load.
public struct RBACMatchAction: Sendable, Equatable {
    public var name: String
    /// `ALLOW` (the default) or `DENY`.
    public var allows: Bool

    public init(name: String, allows: Bool) {
        self.name = name
        self.allows = allows
    }
}
