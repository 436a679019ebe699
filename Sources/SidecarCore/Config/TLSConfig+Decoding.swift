import Foundation
extension TLSContextConfig {
    package static let transportSocketName = "envoy.transport_sockets.tls"
    package static let downstreamType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
    package static let upstreamType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    package static let rawBufferType = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
    package static let secretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

    /// A `transport_socket` on a filter chain or cluster: TLS, or raw_buffer (plaintext, returns nil).
    package static func decodeTransportSocket(_ value: ConfigValue, side: Side) throws -> TLSContextConfig? {
        let obj = try value.object()
        try obj.unsupported(["config_discovery"])
        let name = try obj.required("name").nonEmptyString()
        guard let typed = obj.optional("typed_config") else {
            if name == "envoy.transport_sockets.raw_buffer" || name == "raw_buffer" {
                try obj.finish()
                return nil
            }
            throw value.error("transport_socket '\(name)' needs a typed_config")
        }
        let t = try typed.object()
        let type = try t.required("@type").string()
        let expected = side == .downstream ? downstreamType : upstreamType
        let result: TLSContextConfig?
        switch type {
        case rawBufferType:
            try t.finish()
            result = nil
        case expected:
            result = try decode(t, side: side)
        case downstreamType, upstreamType:
            throw typed.error("a \(side == .downstream ? "listener filter chain" : "cluster") needs \(expected), not \(type)")
        default:
            throw typed.error("transport socket type '\(type)' is not supported by Pilotfish yet; supported: \(expected), \(rawBufferType)")
        }
        try obj.finish()
        return result
    }

    package static func decode(_ t: ConfigObject, side: Side) throws -> TLSContextConfig {
        switch side {
        case .downstream:
            try t.unsupported([
                "require_sni", "session_ticket_keys", "session_ticket_keys_sds_secret_config",
                "disable_stateless_session_resumption", "disable_stateful_session_resumption", "session_timeout",
                "ocsp_staple_policy", "full_scan_certs_on_sni_mismatch", "prefer_client_ciphers",
            ])
        case .upstream:
            try t.unsupported([
                "auto_host_sni", "auto_sni_san_validation", "allow_renegotiation", "max_session_keys",
                "enforce_rsa_key_usage",
            ])
        }
        var config = TLSContextConfig(side: side, certificates: .none)
        if let common = t.optional("common_tls_context") {
            try decodeCommon(common, into: &config)
        }
        switch side {
        case .downstream:
            config.requireClientCertificate = try t.optional("require_client_certificate")?.bool() ?? false
            if case .none = config.certificates {
                throw t.value.error("a DownstreamTlsContext needs a certificate: common_tls_context.tls_certificates or tls_certificate_sds_secret_configs")
            }
            if config.requireClientCertificate && config.validation == nil {
                throw t.value.error("require_client_certificate needs a validation context with trusted_ca to check the client's certificate against")
            }
        case .upstream:
            if let s = t.optional("sni") {
                let sni = try s.string()
                if !sni.isEmpty {
                    if sni.utf8.count > 255 { throw s.error("sni is longer than 255 bytes") }
                    config.sni = sni
                }
            }
        }
        try t.finish()
        return config
    }

    private static func decodeCommon(_ value: ConfigValue, into config: inout TLSContextConfig) throws {
        let c = try value.object()
        try c.unsupported([
            "tls_certificate_provider_instance", "tls_certificate_certificate_provider",
            "tls_certificate_certificate_provider_instance", "tls_certificate_selector", "custom_tls_certificate_selector",
            "validation_context_certificate_provider", "validation_context_certificate_provider_instance",
            "custom_handshaker", "key_log",
        ])
        if let p = c.optional("tls_params") { config.params = try TLSParams.decode(p) }
        let certs = c.optional("tls_certificates")
        let sdsCerts = c.optional("tls_certificate_sds_secret_configs")
        if let certs, sdsCerts != nil {
            throw certs.error("set tls_certificates or tls_certificate_sds_secret_configs, not both")
        }
        if let certs {
            let list = try certs.array().map(TLSCertificateConfig.decode)
            if list.count > 1 {
                throw certs.error("more than one tls_certificate (certificates chosen by key type) is not supported by Pilotfish yet; choose certificates by SNI with several filter chains")
            }
            if !list.isEmpty { config.certificates = .inline(list) }
        }
        if let sdsCerts {
            let list = try sdsCerts.array()
            if list.count > 1 {
                throw sdsCerts.error("more than one tls_certificate_sds_secret_config is not supported by Pilotfish yet")
            }
            if let first = list.first { config.certificates = .sds(try SDSSecretReference.decode(first)) }
        }
        let sources = ["validation_context", "validation_context_sds_secret_config", "combined_validation_context"]
        if let (key, v) = try c.oneOf(sources, required: false) {
            switch key {
            case "validation_context":
                config.validation = .inline(try CertificateValidationConfig.decode(v))
            case "validation_context_sds_secret_config":
                config.validation = .sds(try SDSSecretReference.decode(v), defaults: CertificateValidationConfig())
            default:
                let o = try v.object()
                let defaults = try CertificateValidationConfig.decode(try o.required("default_validation_context"))
                let secret = try SDSSecretReference.decode(try o.required("validation_context_sds_secret_config"))
                try o.unsupported(["validation_context_certificate_provider", "validation_context_certificate_provider_instance"])
                try o.finish()
                config.validation = .sds(secret, defaults: defaults)
            }
        }
        if let a = c.optional("alpn_protocols") {
            config.alpnProtocols = try a.array().map { try $0.nonEmptyString() }
        }
        try c.finish()
    }
}

extension DataSourceConfig {
    package static func decode(_ value: ConfigValue) throws -> DataSourceConfig {
        let o = try value.object()
        try o.unsupported(["environment_variable", "watched_directory"])
        guard let (key, v) = try o.oneOf(["filename", "inline_string", "inline_bytes"]) else {
            throw value.error("expected filename, inline_string or inline_bytes")
        }
        try o.finish()
        switch key {
        case "filename": return .file(try v.nonEmptyString())
        case "inline_string": return .inline(try v.nonEmptyString())
        default:
            // Bytes in Envoy's JSON/YAML form are base64 (how control planes send certificates and keys).
            guard let data = Data(base64Encoded: try v.nonEmptyString()), !data.isEmpty,
                  let text = String(data: data, encoding: .utf8) else {
                throw v.error("inline_bytes must be base64 of PEM text")
            }
            return .inline(text)
        }
    }
}

extension TLSCertificateConfig {
    package static func decode(_ value: ConfigValue) throws -> TLSCertificateConfig {
        let o = try value.object()
        try o.unsupported([
            "pkcs12", "watched_directory", "private_key_provider", "password", "ocsp_staple",
            "signed_certificate_timestamp",
        ])
        let chain = try DataSourceConfig.decode(try o.required("certificate_chain"))
        let key = try DataSourceConfig.decode(try o.required("private_key"))
        try o.finish()
        return TLSCertificateConfig(certificateChain: chain, privateKey: key)
    }
}

extension CertificateValidationConfig {
    package static func decode(_ value: ConfigValue) throws -> CertificateValidationConfig {
        let o = try value.object()
        try o.unsupported([
            "ca_certificate_provider_instance", "system_root_certs", "watched_directory", "verify_certificate_spki",
            "verify_certificate_hash", "match_subject_alt_names", "require_signed_certificate_timestamp", "crl",
            "allow_expired_certificate", "custom_validator_config", "only_verify_leaf_cert_crl", "max_verify_depth",
        ])
        var config = CertificateValidationConfig()
        if let ca = o.optional("trusted_ca") { config.trustedCA = try DataSourceConfig.decode(ca) }
        if let tv = o.optional("trust_chain_verification") {
            let s = try tv.string()
            if s == "ACCEPT_UNTRUSTED" {
                throw tv.error("trust_chain_verification ACCEPT_UNTRUSTED is a valid Envoy value but is not supported by Pilotfish")
            }
            guard s == "VERIFY_TRUST_CHAIN" else { throw tv.error("unknown trust_chain_verification '\(s)'") }
        }
        if let m = o.optional("match_typed_subject_alt_names") {
            config.matchSubjectAltNames = try m.array().map(SubjectAltNameMatcher.decode)
        }
        try o.finish()
        return config
    }
}

extension SubjectAltNameMatcher {
    package static func decode(_ value: ConfigValue) throws -> SubjectAltNameMatcher {
        let o = try value.object()
        try o.unsupported(["oid"])
        let typeValue = try o.required("san_type")
        if try typeValue.string() == "OTHER_NAME" {
            throw typeValue.error("san_type OTHER_NAME is a valid Envoy value but is not supported by Pilotfish yet")
        }
        let type = try typeValue.enumValue(SANType.self)
        let matcher = try StringMatcher.decode(try o.required("matcher"))
        try o.finish()
        return SubjectAltNameMatcher(type: type, matcher: matcher)
    }
}

extension TLSParams {
    package static func decode(_ value: ConfigValue) throws -> TLSParams {
        let o = try value.object()
        try o.unsupported(["signature_algorithms", "compliance_policies"])
        var p = TLSParams()
        if let v = o.optional("tls_minimum_protocol_version") { p.minimumVersion = try v.enumValue(Version.self) }
        if let v = o.optional("tls_maximum_protocol_version") { p.maximumVersion = try v.enumValue(Version.self) }
        if p.minimumVersion != .TLS_AUTO, p.maximumVersion != .TLS_AUTO, p.minimumVersion > p.maximumVersion {
            throw value.error("tls_minimum_protocol_version \(p.minimumVersion.rawValue) is above tls_maximum_protocol_version \(p.maximumVersion.rawValue)")
        }
        if let v = o.optional("cipher_suites") { p.cipherSuites = try v.array().map { try $0.nonEmptyString() } }
        if let v = o.optional("ecdh_curves") { p.ecdhCurves = try v.array().map { try $0.nonEmptyString() } }
        try o.finish()
        return p
    }
}

extension SDSSecretReference {
    /// `SdsSecretConfig`: the secret's name and its `sds_config`: a file (`path_config_source {path,
    /// watched_directory}` or the deprecated `path`), `ads: {}`, or `api_config_source` (a SecretDiscoveryService
    /// stream to a static cluster).
    package static func decode(_ value: ConfigValue) throws -> SDSSecretReference {
        let o = try value.object()
        let name = try o.required("name").nonEmptyString()
        let source = try ConfigSource.decode(try o.required("sds_config"), streams: true)
        try o.finish()
        return SDSSecretReference(name: name, source: source)
    }
}
