import Foundation

/// A `kubernetes.io/tls` Secret holding a workload identity, for `kubectl apply -f secret.yaml` and a pod that
/// mounts it where its sidecar reads `tls.crt`, `tls.key` and `ca.crt` (the key names cert-manager and ingress
/// controllers use for the same type).
public struct KubernetesTLSSecret: Sendable, Equatable {
    public var name: String
    public var namespace: String
    public var certificatePEM: String
    public var privateKeyPEM: String
    public var caCertificatePEM: String

    public init(
        name: String, namespace: String, certificatePEM: String, privateKeyPEM: String, caCertificatePEM: String
    ) throws {
        if let problem = DNSName.subdomainProblem(name) {
            throw IdentityError("invalid Secret name '\(name)': \(problem) (a DNS-1123 subdomain)")
        }
        if let problem = DNSName.labelProblem(namespace) {
            throw IdentityError("invalid namespace '\(namespace)': \(problem) (a DNS-1123 label)")
        }
        self.name = name
        self.namespace = namespace
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
        self.caCertificatePEM = caCertificatePEM
    }

    /// The manifest. Names are quoted because a valid DNS-1123 name can still read as a YAML number or boolean
    /// (`123`, `yes`); base64 never needs quoting.
    public var yaml: String {
        func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
        return """
            apiVersion: v1
            kind: Secret
            metadata:
              name: "\(name)"
              namespace: "\(namespace)"
            type: kubernetes.io/tls
            data:
              ca.crt: \(base64(caCertificatePEM))
              tls.crt: \(base64(certificatePEM))
              tls.key: \(base64(privateKeyPEM))

            """
    }
}
