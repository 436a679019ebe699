import Foundation
import SidecarCore

/// A file-based SDS response: YAML or JSON with `resources`, each an
/// `envoy.extensions.transport_sockets.tls.v3.Secret` (`name` plus `tls_certificate` or `validation_context`).
/// Envoy reads the same file from `sds_config.path_config_source.path`.
package enum SecretFile {
    package enum Secret {
        case certificate(TLSCertificateConfig)
        case validation(CertificateValidationConfig)
    }

    package static func load(_ ref: SDSSecretReference) throws -> Secret {
        guard let data = FileManager.default.contents(atPath: ref.path) else {
            throw TLSMaterial.LoadError(
                description: "SDS file \(ref.path) for secret '\(ref.name)' \(FileManager.default.fileExists(atPath: ref.path) ? "cannot be read" : "does not exist")")
        }
        do {
            return try parse(String(decoding: data, as: UTF8.self), name: ref.name, path: ref.path)
        } catch let e as ConfigError {
            throw TLSMaterial.LoadError(description: "SDS file \(ref.path): \(e)")
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
            let resourceName = try r.required("name").nonEmptyString()
            try r.unsupported(["session_ticket_keys", "generic_secret"])
            guard let (key, v) = try r.oneOf(["tls_certificate", "validation_context"]) else { continue }
            let secret: Secret =
                key == "tls_certificate"
                ? .certificate(try TLSCertificateConfig.decode(v))
                : .validation(try CertificateValidationConfig.decode(v))
            try r.finish()
            if resourceName == name { found = secret }
        }
        try root.finish()
        guard let found else {
            throw ConfigError(path: "resources", line: nil, message: "no secret named '\(name)' in \(path)")
        }
        return found
    }
}
