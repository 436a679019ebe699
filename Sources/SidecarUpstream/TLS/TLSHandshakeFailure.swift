/// Why a TLS handshake failed, in words: BoringSSL's error text reduced to its reason code, with the common ones
/// explained. Both the downstream and the upstream handshake report failures this way.
package enum TLSHandshakeFailure {
    /// BoringSSL's reason (`HTTP_REQUEST`, `NO_SHARED_CIPHER`, ...) without NIOSSL's wrapping, explained.
    package static func reason(_ error: Error) -> String {
        let text = "\(error)"
        let reasons = text.split(separator: ":").compactMap { part -> String? in
            let word = part.split(separator: " ").first.map(String.init) ?? ""
            return word.count > 3 && word.allSatisfy({ $0.isUppercase || $0 == "_" || $0.isNumber }) ? word : nil
        }
        guard let reason = reasons.last else { return text }
        switch reason {
        case "HTTP_REQUEST", "WRONG_VERSION_NUMBER": return "not TLS: plaintext on a TLS port (\(reason))"
        case "NO_SHARED_CIPHER": return "no cipher suite in common (NO_SHARED_CIPHER)"
        case "UNSUPPORTED_PROTOCOL": return "TLS version outside tls_params (UNSUPPORTED_PROTOCOL)"
        case "PEER_DID_NOT_RETURN_A_CERTIFICATE": return "peer did not present a certificate"
        default: return reason
        }
    }
}
