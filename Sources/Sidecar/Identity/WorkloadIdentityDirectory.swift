import Foundation

/// The files a sidecar reads its identity from: `tls.crt` (the leaf alone), `tls.key`, `ca.crt` (the mesh
/// root) and `secret.yaml` (the same three as a Kubernetes Secret).
///
/// Rotation is re-issuing into the same directory while a sidecar watches it, so every file is replaced
/// atomically (`AtomicFiles`) and in this order:
///
/// 1. `ca.crt`: the trust anchor is in place before any leaf that might need it.
/// 2. `tls.key`, then 3. `tls.crt`: the certificate is the commit point. Once a reader sees the new certificate,
///    the matching key is already there. So a reader should read `tls.crt` first, then `tls.key`: it then sees a
///    mismatch only if a second rotation replaced the key in between, and a pair whose keys differ means "retry
///    shortly". (Both renames run back to back after every file is staged and fsynced, so the window between
///    them is a few system calls long.) A watcher that triggers on `tls.crt` finds the new key already there.
/// 4. `secret.yaml` (0600: it holds the key), which no sidecar reads.
public enum WorkloadIdentityDirectory {
    public static let certificateFile = "tls.crt"
    public static let privateKeyFile = "tls.key"
    public static let caCertificateFile = "ca.crt"
    public static let secretFile = "secret.yaml"

    /// Writes `identity` into `directory` (created 0755 if missing), replacing a previous identity atomically;
    /// `secretName` and `namespace` are the Secret's.
    public static func write(
        _ identity: IssuedIdentity, caCertificatePEM: String, secretName: String, namespace: String,
        toDirectory directory: String
    ) throws {
        func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        let secret = try KubernetesTLSSecret(
            name: secretName, namespace: namespace, certificatePEM: identity.certificatePEM,
            privateKeyPEM: identity.privateKeyPEM, caCertificatePEM: caCertificatePEM)
        try AtomicFiles.createDirectory(directory, mode: 0o755)
        try AtomicFiles.replace([
            AtomicFiles.File(path: path(caCertificateFile), contents: caCertificatePEM, mode: 0o644),
            AtomicFiles.File(path: path(privateKeyFile), contents: identity.privateKeyPEM, mode: 0o600),
            AtomicFiles.File(path: path(certificateFile), contents: identity.certificatePEM, mode: 0o644),
            AtomicFiles.File(path: path(secretFile), contents: secret.yaml, mode: 0o600),
        ])
    }
}
