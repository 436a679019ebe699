import NIOHTTP1

/// A CORS policy: `envoy.extensions.filters.http.cors.v3.CorsPolicy` (a `typed_per_filter_config` of the route,
/// virtual host or route configuration) or the deprecated `cors` field of a virtual host or route action
/// (`envoy.config.route.v3.CorsPolicy`, the same fields). Immutable and shared: a request's policy chain holds
/// references.
package final class CORSPolicy: Sendable {
    package let allowOrigins: [StringMatcher]
    package let allowMethods: String
    package let allowHeaders: String
    package let exposeHeaders: String
    package let maxAge: String
    package let allowCredentials: Bool?
    package let allowPrivateNetworkAccess: Bool?
    package let forwardNotMatchingPreflights: Bool?
    /// `filter_enabled.default_value`; unset: enabled for every request.
    package let filterEnabled: RuntimeFractionalPercent?
    /// `shadow_enabled.default_value`; unset: off.
    package let shadowEnabled: RuntimeFractionalPercent?

    package init(allowOrigins: [StringMatcher] = [], allowMethods: String = "", allowHeaders: String = "",
         exposeHeaders: String = "", maxAge: String = "", allowCredentials: Bool? = nil,
         allowPrivateNetworkAccess: Bool? = nil, forwardNotMatchingPreflights: Bool? = nil,
         filterEnabled: RuntimeFractionalPercent? = nil, shadowEnabled: RuntimeFractionalPercent? = nil) {
        self.allowOrigins = allowOrigins
        self.allowMethods = allowMethods
        self.allowHeaders = allowHeaders
        self.exposeHeaders = exposeHeaders
        self.maxAge = maxAge
        self.allowCredentials = allowCredentials
        self.allowPrivateNetworkAccess = allowPrivateNetworkAccess
        self.forwardNotMatchingPreflights = forwardNotMatchingPreflights
        self.filterEnabled = filterEnabled
        self.shadowEnabled = shadowEnabled
    }

    package static func decode(_ value: ConfigValue) throws -> CORSPolicy {
        try decode(try value.object())
    }

    /// Both messages have these fields in Envoy 1.40 (the route one's `allow_origin`/`allow_origin_regex`/
    /// `enabled` are gone since v3).
    package static func decode(_ obj: ConfigObject) throws -> CORSPolicy {
        let origins = try obj.list("allow_origin_string_match").map(StringMatcher.decode)
        let policy = CORSPolicy(
            allowOrigins: origins,
            allowMethods: try obj.optional("allow_methods")?.headerValueText() ?? "",
            allowHeaders: try obj.optional("allow_headers")?.headerValueText() ?? "",
            exposeHeaders: try obj.optional("expose_headers")?.headerValueText() ?? "",
            maxAge: try obj.optional("max_age")?.headerValueText() ?? "",
            allowCredentials: try obj.optional("allow_credentials")?.bool(),
            allowPrivateNetworkAccess: try obj.optional("allow_private_network_access")?.bool(),
            forwardNotMatchingPreflights: try obj.optional("forward_not_matching_preflights")?.bool(),
            filterEnabled: try obj.optional("filter_enabled").map(FractionalPercent.decodeRuntime),
            shadowEnabled: try obj.optional("shadow_enabled").map(FractionalPercent.decodeRuntime))
        try obj.finish()
        return policy
    }
}
