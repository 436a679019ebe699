import Foundation
import SidecarCore

/// Envoy's `/config_dump` never shows a secret: fields annotated `(udpa.annotations.sensitive)` in its API are
/// redacted, every string and bytes value inside them (all the way down) replaced by `[redacted]`, whichever
/// `DataSource` form holds it. Checked on Envoy 1.40: `private_key: {inline_string: "-----BEGIN…"}` shows as
/// `{"inline_string": "[redacted]"}`, `private_key: {filename: /etc/key.pem}` as `{"filename": "[redacted]"}`, and
/// `password: {inline_string: …}` as `{"inline_string": "[redacted]"}`, in listeners' DownstreamTlsContext and in
/// clusters' UpstreamTlsContext alike; `certificate_chain` is shown as written.
///
/// The sensitive fields of the messages a config can hold secrets in: TlsCertificate `private_key`, `password`,
/// `pkcs12`; TlsSessionTicketKeys `keys`; GenericSecret `secret`. They are found by the message that holds them
/// (a `tls_certificates` entry, a Secret's `tls_certificate`, `session_ticket_keys`, `generic_secret`) wherever that
/// is in the document, in snake_case or JSON camelCase, and through YAML merge keys. Fields Pilotfish refuses are
/// redacted too, so the dump stays safe if one is accepted later.
extension ConfigDump {
    static let redacted = "[redacted]"
    static let redactedBytes = Data(redacted.utf8).base64EncodedString()

    static func redactSecrets(_ value: Any) -> Any {
        if let list = value as? [Any] { return list.map(redactSecrets) }
        guard let map = value as? [String: Any] else { return value }
        var out: [String: Any] = [:]
        for (key, child) in map {
            switch ConfigObject.snakeCase(key) {
            case "tls_certificates":
                out[key] = (child as? [Any])?.map { redactFields(["private_key", "password", "pkcs12"], in: $0) }
                    ?? redactEverything(child)
            case "tls_certificate":
                out[key] = redactFields(["private_key", "password", "pkcs12"], in: child)
            case "session_ticket_keys":
                out[key] = redactFields(["keys"], in: child)
            case "generic_secret":
                out[key] = redactFields(["secret"], in: child)
            default:
                out[key] = redactSecrets(child)
            }
        }
        return out
    }

    /// One message whose fields `sensitive` are redacted; its other fields are searched like the rest.
    private static func redactFields(_ sensitive: Set<String>, in value: Any) -> Any {
        guard let map = value as? [String: Any] else { return redactEverything(value) }
        var out: [String: Any] = [:]
        for (key, child) in map {
            if sensitive.contains(ConfigObject.snakeCase(key)) {
                out[key] = redactEverything(child)
            } else if key == "<<" {
                // A YAML merge key brings in fields of the same message.
                out[key] = (child as? [Any])?.map { redactFields(sensitive, in: $0) } ?? redactFields(sensitive, in: child)
            } else {
                out[key] = redactSecrets(child)
            }
        }
        return out
    }

    /// Every scalar replaced (a plain YAML scalar such as `12345` was read as a number and is a secret too).
    private static func redactEverything(_ value: Any) -> Any {
        switch value {
        case let list as [Any]: return list.map(redactEverything)
        case let map as [String: Any]:
            // A bytes field holds base64: Envoy shows the base64 of "[redacted]".
            return Dictionary(uniqueKeysWithValues: map.map { key, child in
                (key, ConfigObject.snakeCase(key) == "inline_bytes" && child is String
                    ? redactedBytes : redactEverything(child))
            })
        case is NSNull: return value
        default: return redacted
        }
    }
}
