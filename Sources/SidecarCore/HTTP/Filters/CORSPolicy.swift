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
            allowMethods: try obj.optional("allow_methods")?.string() ?? "",
            allowHeaders: try obj.optional("allow_headers")?.string() ?? "",
            exposeHeaders: try obj.optional("expose_headers")?.string() ?? "",
            maxAge: try obj.optional("max_age")?.string() ?? "",
            allowCredentials: try obj.optional("allow_credentials")?.bool(),
            allowPrivateNetworkAccess: try obj.optional("allow_private_network_access")?.bool(),
            forwardNotMatchingPreflights: try obj.optional("forward_not_matching_preflights")?.bool(),
            filterEnabled: try obj.optional("filter_enabled").map(FractionalPercent.decodeRuntime),
            shadowEnabled: try obj.optional("shadow_enabled").map(FractionalPercent.decodeRuntime))
        try obj.finish()
        return policy
    }
}

/// The policies that apply to one request, most specific first (route, virtual host, route configuration):
/// Envoy's CORS filter takes each field from the first policy that sets it, except `filter_enabled` and
/// `shadow_enabled`, which only the most specific policy decides.
package struct CORSPolicyChain {
    private var first: CORSPolicy?
    private var second: CORSPolicy?
    private var third: CORSPolicy?

    package init(_ a: CORSPolicy? = nil, _ b: CORSPolicy? = nil, _ c: CORSPolicy? = nil) {
        // Packed so that `first` is the most specific policy present.
        if let a {
            first = a
            second = b ?? c
            third = b != nil ? c : nil
        } else {
            first = b ?? c
            second = b != nil ? c : nil
        }
    }

    package var isEmpty: Bool { first == nil }

    /// The first policy's value of a field, in order of specificity.
    private func pick<T>(_ field: (CORSPolicy) -> T?) -> T? {
        if let p = first, let v = field(p) { return v }
        if let p = second, let v = field(p) { return v }
        if let p = third, let v = field(p) { return v }
        return nil
    }

    private func pickString(_ field: (CORSPolicy) -> String) -> String {
        pick { field($0).isEmpty ? nil : field($0) } ?? ""
    }

    package var allowOrigins: [StringMatcher] { pick { $0.allowOrigins.isEmpty ? nil : $0.allowOrigins } ?? [] }
    package var allowMethods: String { pickString(\.allowMethods) }
    package var allowHeaders: String { pickString(\.allowHeaders) }
    package var exposeHeaders: String { pickString(\.exposeHeaders) }
    package var maxAge: String { pickString(\.maxAge) }
    package var allowCredentials: Bool { pick(\.allowCredentials) ?? false }
    package var allowPrivateNetworkAccess: Bool { pick(\.allowPrivateNetworkAccess) ?? false }
    package var forwardNotMatchingPreflights: Bool { pick(\.forwardNotMatchingPreflights) ?? true }

    /// Envoy's `enabled()`: the most specific policy's `filter_enabled` (100 % when unset); no policy: off.
    /// Like Envoy, each call draws its own random number.
    package func enabled(_ runtime: Runtime?, _ random: () -> UInt64) -> Bool {
        guard let p = first else { return false }
        guard let f = p.filterEnabled else { return true }
        return f.evaluate(runtime, random: random())
    }

    /// Envoy's `shadowEnabled()`: the most specific policy's `shadow_enabled` (off when unset).
    package func shadowEnabled(_ runtime: Runtime?, _ random: () -> UInt64) -> Bool {
        guard let s = first?.shadowEnabled else { return false }
        return s.evaluate(runtime, random: random())
    }

    /// Envoy's `isOriginAllowed`: a matcher that matches `*` allows every origin.
    package func isOriginAllowed(_ origin: String) -> Bool {
        allowOrigins.contains { $0.matches("*") || $0.matches(origin) }
    }
}

/// What the CORS filter decided about one request in `decodeHeaders` (Envoy's cors_filter.cc), as plain values.
package struct CORSEvaluation {
    package enum OriginCheck: Equatable {
        /// No policy enabled (or shadowed), or no `origin` header: nothing counted.
        case notChecked
        case valid
        case invalid
    }

    package var origin = OriginCheck.notChecked
    /// The allowed origin the response echoes (Envoy's `latched_origin_`).
    package var latchedOrigin: String?
    /// The filter enforces CORS on this request: the response gets the CORS headers (when the origin is allowed).
    package var isCORSRequest = false
    /// A preflight answered here: the headers of the `200` (before this filter's `encodeHeaders` adds
    /// `access-control-expose-headers` and repeats `-allow-origin` / `-allow-credentials`).
    package var preflight: [(String, String)]?

    package init() {}

    /// Envoy's `CorsFilter::decodeHeaders`. `enabled` / `shadowEnabled` are asked in Envoy's order (each call
    /// may draw a new random number). `headers`: the request headers, repeated ones joined with `,` (as Envoy's
    /// header map keeps `origin` and the `access-control-request-*` headers).
    package static func evaluate(_ chain: CORSPolicyChain, method: String, origin: String?, requestMethod: String?,
                         requestHeaders: String?, requestPrivateNetwork: String?,
                         enabled: () -> Bool, shadowEnabled: () -> Bool) -> CORSEvaluation {
        var out = CORSEvaluation()
        if !enabled() && !shadowEnabled() { return out }
        guard let origin, !origin.isEmpty else { return out }
        let allowed = chain.isOriginAllowed(origin)
        if allowed {
            out.origin = .valid
            out.latchedOrigin = origin
        } else {
            out.origin = .invalid
        }
        if shadowEnabled() && !enabled() { return out }
        out.isCORSRequest = true
        guard method == "OPTIONS", let requestMethod, !requestMethod.isEmpty else { return out }
        // A preflight: OPTIONS with an origin and access-control-request-method.
        if !allowed && chain.forwardNotMatchingPreflights { return out }
        var h: [(String, String)] = []
        if allowed { h.append(("access-control-allow-origin", origin)) }
        if chain.allowCredentials { h.append(("access-control-allow-credentials", "true")) }
        let methods = chain.allowMethods
        if !methods.isEmpty { h.append(("access-control-allow-methods", methods == "*" ? requestMethod : methods)) }
        let allowHeaders = chain.allowHeaders
        if !allowHeaders.isEmpty {
            h.append(("access-control-allow-headers", allowHeaders == "*" ? (requestHeaders ?? "") : allowHeaders))
        }
        let maxAge = chain.maxAge
        if !maxAge.isEmpty { h.append(("access-control-max-age", maxAge)) }
        if chain.allowPrivateNetworkAccess && requestPrivateNetwork == "true" {
            h.append(("access-control-allow-private-network", "true"))
        }
        out.preflight = h
        return out
    }

    /// Envoy's `CorsFilter::encodeHeaders`: a CORS request with an allowed origin gets
    /// `access-control-allow-origin` (replacing the upstream's), `-allow-credentials` and `-expose-headers`.
    package func applyResponseHeaders(_ chain: CORSPolicyChain, to headers: inout HTTPHeaders) {
        guard isCORSRequest, let origin = latchedOrigin else { return }
        headers.setKeepingPosition(name: "access-control-allow-origin", value: origin)
        if chain.allowCredentials { headers.setKeepingPosition(name: "access-control-allow-credentials", value: "true") }
        let expose = chain.exposeHeaders
        if !expose.isEmpty { headers.setKeepingPosition(name: "access-control-expose-headers", value: expose) }
    }
}
