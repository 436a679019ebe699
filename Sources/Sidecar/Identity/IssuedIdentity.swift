import X509

/// A workload certificate and its private key, as issued by a `MeshCertificateAuthority`: what a sidecar loads as
/// its `tls_certificates` entry (the root goes separately into `trusted_ca`).
public struct IssuedIdentity: Sendable {
    public let spiffeID: SPIFFEID
    public let certificate: Certificate
    /// The leaf alone, PEM (`-----BEGIN CERTIFICATE-----`): the root is not appended, because peers must anchor
    /// on their own copy of it, never on one the peer sends.
    public let certificatePEM: String
    /// The leaf's private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), which OpenSSL, BoringSSL and Python's
    /// `ssl` all load.
    public let privateKeyPEM: String
}
