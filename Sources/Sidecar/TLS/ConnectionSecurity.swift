/// What a downstream connection's TLS handshake established about the peer: used by RBAC
/// (`authenticated.principal_name`), `x-forwarded-proto` and access to the SNI. `nil` for plaintext.
struct ConnectionSecurity: Sendable, Equatable {
    /// The peer presented a certificate and it passed validation.
    var peerCertificatePresented = false
    /// URI SANs of the peer's leaf certificate, in certificate order (SPIFFE IDs live here).
    var peerURISANs: [String] = []
    /// DNS SANs of the peer's leaf certificate, in certificate order.
    var peerDNSSANs: [String] = []
    /// The peer's subject in RFC 2253 form ("CN=x,O=y"), empty without a certificate.
    var peerSubject = ""
    /// The SNI the client asked for, if any.
    var requestedServerName: String?
    /// The negotiated ALPN protocol, if any.
    var negotiatedProtocol: String?
}
