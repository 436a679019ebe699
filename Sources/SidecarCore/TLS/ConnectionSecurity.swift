/// What a downstream connection's TLS handshake established about the peer: used by RBAC
/// (`authenticated.principal_name`), `x-forwarded-proto` and access to the SNI. `nil` for plaintext.
package struct ConnectionSecurity: Sendable, Equatable {
    /// The peer presented a certificate and it passed validation.
    package var peerCertificatePresented = false
    /// URI SANs of the peer's leaf certificate, in certificate order (SPIFFE IDs live here).
    package var peerURISANs: [String] = []
    /// DNS SANs of the peer's leaf certificate, in certificate order.
    package var peerDNSSANs: [String] = []
    /// The peer's subject in RFC 2253 form ("CN=x,O=y"), empty without a certificate.
    package var peerSubject = ""
    /// The SNI the client asked for, if any.
    package var requestedServerName: String?
    /// The negotiated ALPN protocol, if any.
    package var negotiatedProtocol: String?

    package init(
        peerCertificatePresented: Bool = false, peerURISANs: [String] = [], peerDNSSANs: [String] = [],
        peerSubject: String = "", requestedServerName: String? = nil, negotiatedProtocol: String? = nil
    ) {
        self.peerCertificatePresented = peerCertificatePresented
        self.peerURISANs = peerURISANs
        self.peerDNSSANs = peerDNSSANs
        self.peerSubject = peerSubject
        self.requestedServerName = requestedServerName
        self.negotiatedProtocol = negotiatedProtocol
    }
}
