import Foundation
import SidecarCore

/// A file-based SDS response: YAML or JSON with `resources`, each an
/// `envoy.extensions.transport_sockets.tls.v3.Secret` (`name` plus `tls_certificate` or `validation_context`).
/// Envoy reads the same file from `sds_config.path_config_source.path`.
package enum SecretFile {
    package enum Secret: Sendable, Equatable {
        case certificate(TLSCertificateConfig)
        case validation(CertificateValidationConfig)
    }

    package static func load(_ ref: SDSSecretReference) throws -> Secret {
        guard let path = ref.file?.path else { preconditionFailure("secret '\(ref.name)' is not served from a file") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TLSMaterial.LoadError(
                description: "SDS file \(path) for secret '\(ref.name)' \(FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist")")
        }
        do {
            return try parse(String(decoding: data, as: UTF8.self), name: ref.name, path: path)
        } catch let e as ConfigError {
            throw TLSMaterial.LoadError(description: "SDS file \(path): \(e)")
        }
    }

    package static func parse(_ text: String, name: String, path: String) throws -> Secret {
        guard let node = try ConfigDocument.parse(text) else {
            throw ConfigError(path: "", line: nil, message: "empty SDS file")
        }
        let root = try ConfigValue(node: node, path: "").object()
        try root.unsupported(["version_info", "canary", "type_url", "nonce", "control_plane"])
        var found: Secret?
        for item in try root.list("resources") {
            let r = try item.object()
            if let t = r.optional("@type") {
                let type = try t.string()
                guard type == TLSContextConfig.secretType else {
                    throw t.error("SDS resources must be \(TLSContextConfig.secretType), found \(type)")
                }
            }
            guard let (resourceName, secret) = try resource(r) else { continue }
            if resourceName == name { found = secret }
        }
        try root.finish()
        guard let found else {
            throw ConfigError(path: "resources", line: nil, message: "no secret named '\(name)' in \(path)")
        }
        return found
    }

    /// One `envoy.extensions.transport_sockets.tls.v3.Secret` (its `@type` already checked): its name and what it
    /// holds, nil for one that holds neither a certificate nor a validation context.
    package static func resource(_ r: ConfigObject) throws -> (name: String, secret: Secret)? {
        let name = try r.required("name").nonEmptyString()
        try r.unsupported(["session_ticket_keys", "generic_secret"])
        guard let (key, v) = try r.oneOf(["tls_certificate", "validation_context"]) else { return nil }
        let secret: Secret =
            key == "tls_certificate"
            ? .certificate(try TLSCertificateConfig.decode(v))
            : .validation(try CertificateValidationConfig.decode(v))
        try r.finish()
        return (name, secret)
    }
}
