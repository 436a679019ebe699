/// The name grammars identities are built from: Kubernetes' DNS-1123 label (namespaces, service accounts) and
/// DNS-1123 subdomain (trust domains, Secret names, DNS SANs).
///
/// Lower case only: Kubernetes rejects upper-case names, and SPIFFE requires trust domains in lower case, so a
/// mixed-case input is an error rather than something folded silently (two spellings would be two identities to
/// a byte-comparing RBAC rule).
enum DNSName {
    /// Why `name` is not a DNS-1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters), or nil.
    static func labelProblem(_ name: String) -> String? {
        if name.isEmpty { return "must not be empty" }
        if name.utf8.count > 63 { return "must be at most 63 characters (it has \(name.utf8.count))" }
        for scalar in name.unicodeScalars where !isLowerAlphanumeric(scalar) && scalar != "-" {
            return "must consist of lower-case letters, digits and '-' (found '\(scalar.escaped(asASCII: false))')"
        }
        if name.hasPrefix("-") || name.hasSuffix("-") {
            return "must start and end with a lower-case letter or digit"
        }
        return nil
    }

    /// Why `name` is not a DNS-1123 subdomain (dot-separated labels, at most 253 characters), or nil.
    static func subdomainProblem(_ name: String) -> String? {
        if name.isEmpty { return "must not be empty" }
        if name.utf8.count > 253 { return "must be at most 253 characters (it has \(name.utf8.count))" }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            if label.isEmpty { return "must not have an empty label (leading, trailing or doubled '.')" }
            if let problem = labelProblem(String(label)) { return "label '\(label)' \(problem)" }
        }
        return nil
    }

    /// Why `name` cannot be a DNS subject alternative name, or nil: a DNS-1123 subdomain, optionally with a
    /// leading `*.` wildcard label (RFC 6125 6.4.3 matches a wildcard against exactly one left-most label).
    static func sanProblem(_ name: String) -> String? {
        if name.hasPrefix("*.") { return subdomainProblem(String(name.dropFirst(2))) }
        return subdomainProblem(name)
    }

    static func isLowerAlphanumeric(_ scalar: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar)
    }
}
