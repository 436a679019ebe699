extension RBACMatchAction {
    package static let typeName = "envoy.config.rbac.v3.Action"

    /// An `on_match.action`: an `envoy.config.rbac.v3.Action` (`name` required, `action` ALLOW by default).
    package static func decode(_ value: ConfigValue) throws -> RBACMatchAction {
        let ext = try TypedExtension.decode(value)
        guard ext.typeName == typeName else { throw ext.unregistered() }
        let obj = ext.config
        let name = try obj.optional("name")?.string() ?? ""
        if name.isEmpty {
            throw (obj.optional("name") ?? ext.configValue).error(
                "'name' must be at least 1 character (Envoy: ActionValidationError.Name)")
        }
        var allows = true
        if let a = obj.optional("action") {
            switch try a.string() {
            case "ALLOW": allows = true
            case "DENY": allows = false
            case "LOG":
                throw a.error("action LOG is a valid Envoy value but is not supported by Pilotfish yet; use ALLOW or DENY")
            case let other:
                throw a.error("unknown value '\(other)'; expected one of: ALLOW, DENY, LOG")
            }
        }
        try obj.finish()
        return RBACMatchAction(name: name, allows: allows)
    }
}
