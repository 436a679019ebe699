/// A workload's SPIFFE ID, `spiffe://<trust domain>/<path>`: what a Pilotfish workload certificate asserts as
/// its one URI SAN, and what peers authorise (`authenticated.principal_name`, Envoy's
/// `match_typed_subject_alt_names` with `san_type: URI`).
///
/// Parsing follows the SPIFFE ID standard (spiffe/spiffe `standards/SPIFFE-ID.md`, section 2): scheme `spiffe` in
/// lower case; a trust domain of lower-case letters, digits, `.`, `-` and `_` with no port or user info; a path of
/// non-empty segments of letters, digits, `.`, `-` and `_`, none `.` or `..`, no trailing `/`, no query or
/// fragment, no percent-encoding; at most 2048 bytes. The trust-domain ID alone (`spiffe://td`, no path) names no
/// workload, so it is refused here: this type only models what a certificate can be issued for.
public struct SPIFFEID: Sendable, Hashable, CustomStringConvertible {
    public let trustDomain: String
    /// The path, starting with `/` (e.g. `/ns/default/sa/web`).
    public let path: String

    /// The URI form, as it appears in the certificate's URI SAN.
    public var description: String { "spiffe://\(trustDomain)\(path)" }

    /// Parses `spiffe://td/path`, refusing anything the SPIFFE standard does not allow.
    public init(parsing string: String) throws(IdentityError) {
        func refuse(_ reason: String) -> IdentityError {
            IdentityError("invalid SPIFFE ID '\(string)': \(reason)")
        }
        if string.utf8.count > 2048 { throw refuse("longer than 2048 bytes") }
        guard string.hasPrefix("spiffe://") else { throw refuse("must start with 'spiffe://'") }
        let rest = string.dropFirst("spiffe://".count)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let trustDomain = String(rest[..<slash])
        let path = String(rest[slash...])
        if let problem = Self.trustDomainSyntaxProblem(trustDomain) { throw refuse(problem) }
        if path.isEmpty { throw refuse("has no path: a workload's ID needs one, e.g. /ns/<namespace>/sa/<account>") }
        if let problem = Self.pathProblem(path) { throw refuse(problem) }
        self.trustDomain = trustDomain
        self.path = path
    }

    /// The Kubernetes form Istio and Linkerd use, `spiffe://<td>/ns/<namespace>/sa/<service account>`.
    ///
    /// Stricter than parsing: the namespace and service account must be DNS-1123 labels (as Kubernetes names
    /// them) and the trust domain a DNS name, so a typo fails here rather than minting an identity no pod has.
    public init(trustDomain: String, namespace: String, serviceAccount: String) throws(IdentityError) {
        try Self.validateTrustDomain(trustDomain)
        if let problem = DNSName.labelProblem(namespace) {
            throw IdentityError("invalid namespace '\(namespace)': \(problem) (a DNS-1123 label)")
        }
        if let problem = DNSName.labelProblem(serviceAccount) {
            throw IdentityError("invalid service account '\(serviceAccount)': \(problem) (a DNS-1123 label)")
        }
        self.trustDomain = trustDomain
        self.path = "/ns/\(namespace)/sa/\(serviceAccount)"
    }

    /// Refuses a trust domain that is not a lower-case DNS name (the issuer's rule, stricter than SPIFFE's
    /// syntax, which also allows `_`): it becomes the CA's `O=` and the host part of every ID under it.
    public static func validateTrustDomain(_ trustDomain: String) throws(IdentityError) {
        if let problem = DNSName.subdomainProblem(trustDomain) {
            throw IdentityError("invalid trust domain '\(trustDomain)': \(problem) (a lower-case DNS name)")
        }
    }

    /// The namespace of a Kubernetes-form ID (`/ns/<namespace>/sa/<account>`), nil for other paths.
    public var namespace: String? { kubernetesSegments?.namespace }

    /// The service account of a Kubernetes-form ID, nil for other paths.
    public var serviceAccount: String? { kubernetesSegments?.serviceAccount }

    private var kubernetesSegments: (namespace: String, serviceAccount: String)? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        guard segments.count == 5, segments[1] == "ns", segments[3] == "sa" else { return nil }
        return (String(segments[2]), String(segments[4]))
    }

    private static func trustDomainSyntaxProblem(_ trustDomain: String) -> String? {
        if trustDomain.isEmpty { return "trust domain is empty" }
        if trustDomain.utf8.count > 255 { return "trust domain '\(trustDomain)' is longer than 255 bytes" }
        for scalar in trustDomain.unicodeScalars where !DNSName.isLowerAlphanumeric(scalar) {
            switch scalar {
            case ".", "-", "_":
                continue
            case ":":
                return "trust domain '\(trustDomain)' must not have a port"
            case "@":
                return "trust domain '\(trustDomain)' must not have user info"
            default:
                return "trust domain '\(trustDomain)' may only contain lower-case letters, digits, '.', '-' and '_'"
                    + " (found '\(scalar.escaped(asASCII: false))')"
            }
        }
        return nil
    }

    private static func pathProblem(_ path: String) -> String? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        for segment in segments {
            if segment.isEmpty { return "path '\(path)' has an empty segment (doubled or trailing '/')" }
            if segment == "." || segment == ".." { return "path '\(path)' has a '\(segment)' segment" }
            for scalar in segment.unicodeScalars where !isPathCharacter(scalar) {
                return "path '\(path)' may only contain letters, digits, '.', '-', '_' and '/'"
                    + " (found '\(scalar.escaped(asASCII: false))')"
            }
        }
        return nil
    }

    private static func isPathCharacter(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
            || scalar == "." || scalar == "-" || scalar == "_"
    }
}
