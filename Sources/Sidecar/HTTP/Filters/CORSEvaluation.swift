import NIOHTTP1
import SidecarCore

/// The policies that apply to one request, most specific first (route, virtual host, route configuration):
/// Envoy's CORS filter takes each field from the first policy that sets it, except `filter_enabled` and
/// `shadow_enabled`, which only the most specific policy decides.
struct CORSPolicyChain {
    private var first: CORSPolicy?
    private var second: CORSPolicy?
    private var third: CORSPolicy?

    init(_ a: CORSPolicy? = nil, _ b: CORSPolicy? = nil, _ c: CORSPolicy? = nil) {
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

    var isEmpty: Bool { first == nil }

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

    var allowOrigins: [StringMatcher] { pick { $0.allowOrigins.isEmpty ? nil : $0.allowOrigins } ?? [] }
    var allowMethods: String { pickString(\.allowMethods) }
    var allowHeaders: String { pickString(\.allowHeaders) }
    var exposeHeaders: String { pickString(\.exposeHeaders) }
    var maxAge: String { pickString(\.maxAge) }
    var allowCredentials: Bool { pick(\.allowCredentials) ?? false }
    var allowPrivateNetworkAccess: Bool { pick(\.allowPrivateNetworkAccess) ?? false }
    var forwardNotMatchingPreflights: Bool { pick(\.forwardNotMatchingPreflights) ?? true }

    /// Envoy's `enabled()`: the most specific policy's `filter_enabled` (100 % when unset); no policy: off.
    /// Like Envoy, each call draws its own random number.
    func enabled(_ runtime: Runtime?, _ random: () -> UInt64) -> Bool {
        guard let p = first else { return false }
        guard let f = p.filterEnabled else { return true }
        return f.evaluate(runtime, random: random())
    }

    /// Envoy's `shadowEnabled()`: the most specific policy's `shadow_enabled` (off when unset).
    func shadowEnabled(_ runtime: Runtime?, _ random: () -> UInt64) -> Bool {
        guard let s = first?.shadowEnabled else { return false }
        return s.evaluate(runtime, random: random())
    }

    /// Envoy's `isOriginAllowed`: a matcher that matches `*` allows every origin.
    func isOriginAllowed(_ origin: String) -> Bool {
        allowOrigins.contains { $0.matches("*") || $0.matches(origin) }
    }
}

/// What the CORS filter decided about one request in `decodeHeaders` (Envoy's cors_filter.cc), as plain values.
struct CORSEvaluation {
    enum OriginCheck: Equatable {
        /// No policy enabled (or shadowed), or no `origin` header: nothing counted.
        case notChecked
        case valid
        case invalid
    }

    var origin = OriginCheck.notChecked
    /// The allowed origin the response echoes (Envoy's `latched_origin_`).
    var latchedOrigin: String?
    /// The filter enforces CORS on this request: the response gets the CORS headers (when the origin is allowed).
    var isCORSRequest = false
    /// A preflight answered here: the headers of the `200` (before this filter's `encodeHeaders` adds
    /// `access-control-expose-headers` and repeats `-allow-origin` / `-allow-credentials`).
    var preflight: [(String, String)]?

    init() {}

    /// Envoy's `CorsFilter::decodeHeaders`. `enabled` / `shadowEnabled` are asked in Envoy's order (each call
    /// may draw a new random number). `headers`: the request headers, repeated ones joined with `,` (as Envoy's
    /// header map keeps `origin` and the `access-control-request-*` headers).
    static func evaluate(_ chain: CORSPolicyChain, method: String, origin: String?, requestMethod: String?,
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
    func applyResponseHeaders(_ chain: CORSPolicyChain, to headers: inout HTTPHeaders) {
        guard isCORSRequest, let origin = latchedOrigin else { return }
        headers.setKeepingPosition(name: "access-control-allow-origin", value: origin)
        if chain.allowCredentials { headers.setKeepingPosition(name: "access-control-allow-credentials", value: "true") }
        let expose = chain.exposeHeaders
        if !expose.isEmpty { headers.setKeepingPosition(name: "access-control-expose-headers", value: expose) }
    }
}
