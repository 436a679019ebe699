/// `xds.core.v3.TypedExtensionConfig` (`name`, `typed_config`), as the match tree's inputs, input matchers and
/// actions are written. Envoy picks the extension by the `@type` of `typed_config`; the name only has to be
/// non-empty.
package struct TypedExtension {
    package let name: String
    /// The `@type` as written (`type.googleapis.com/envoy.config.rbac.v3.Action`).
    package let typeURL: String
    /// The message name: the `@type` after its last "/".
    package let typeName: String
    /// `typed_config`, with `@type` read; its decoder reads the rest and finishes it.
    package let config: ConfigObject
    package let configValue: ConfigValue

    package static func decode(_ value: ConfigValue) throws -> TypedExtension {
        let obj = try value.object()
        guard let nameValue = obj.optional("name"), let name = try? nameValue.string(), !name.isEmpty else {
            throw (obj.optional("name") ?? value).error("'name' must be at least 1 character (as Envoy requires)")
        }
        guard let configValue = obj.optional("typed_config") else {
            throw value.error("missing required field 'typed_config'")
        }
        try obj.finish()
        let config = try configValue.object()
        let typeURL = try config.required("@type").string()
        let typeName = typeURL.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? typeURL
        return TypedExtension(name: name, typeURL: typeURL, typeName: typeName, config: config,
                              configValue: configValue)
    }

    /// Envoy's answer for a `@type` no extension of this kind is registered under.
    package func unregistered() -> ConfigError {
        configValue.error("Didn't find a registered implementation for '\(name)' with type URL: '\(typeName)'")
    }
}
