import NIOHPACK

/// RFC 9113's rules for the fields of a header block a client sends (section 8.2 and 8.3), checked by the stream's
/// codec in place of NIOHTTP2's validation, which checks every block both ways (the proxy's own response blocks
/// are made valid by `HTTP2MessageTranslation`) one byte at a time through Substring views: it was 9 % of a
/// proxied stream's instructions. The rules and what breaks them are NIOHTTP2's: a block that breaks one is the
/// stream's PROTOCOL_ERROR.
enum HTTP2FieldRules {
    /// What broke a rule, named for the log and tests.
    struct Violation: Error, Equatable, CustomStringConvertible {
        let description: String
    }

    /// A regular field's name: one or more lower-case token characters (RFC 9110 5.6.2, upper case excluded).
    static func isValidName(_ name: String) -> Bool {
        var name = name
        return name.withUTF8 { bytes in
            guard !bytes.isEmpty else { return false }
            for byte in bytes where !nameBytes[Int(byte)] { return false }
            return true
        }
    }

    /// A regular field's value: no NUL, CR or LF (RFC 9113 8.2.1).
    static func isValidValue(_ value: String) -> Bool {
        var value = value
        return value.withUTF8 { bytes in
            for byte in bytes where byte == 0x00 || byte == 0x0A || byte == 0x0D { return false }
            return true
        }
    }

    /// A pseudo-header's value: no control, space or DEL (it becomes part of a request line or Host).
    static func isValidPseudoValue(_ value: String) -> Bool {
        var value = value
        return value.withUTF8 { bytes in
            for byte in bytes where byte <= 0x20 || byte == 0x7F { return false }
            return true
        }
    }

    /// Checks a regular field of a request or trailer block: its name and value, the fields HTTP/2 forbids, and
    /// `te` other than `trailers`.
    static func checkRegular(_ name: String, _ value: String) throws {
        guard isValidName(name) else { throw Violation(description: "invalid field name '\(name)'") }
        if name.utf8.count == 2 && name == "te" {
            guard value == "trailers" else { throw Violation(description: "te: \(value)") }
        } else if HTTP2MessageTranslation.isConnectionSpecific(name) {
            throw Violation(description: "connection-specific field '\(name)'")
        }
        guard isValidValue(value) else { throw Violation(description: "invalid value of '\(name)'") }
    }

    /// Checks a trailer block: regular fields only.
    static func checkTrailers(_ block: HPACKHeaders) throws {
        for (name, value, _) in block {
            if name.utf8.first == UInt8(ascii: ":") { throw Violation(description: "pseudo-header \(name) in trailers") }
            try checkRegular(name, value)
        }
    }

    /// Token characters in lower case: ! # $ % & ' * + - . 0-9 ^ _ ` a-z | ~
    private static let nameBytes: [Bool] = (0..<256).map { byte in
        switch byte {
        case 0x21, 0x23...0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x30...0x39, 0x5E...0x7A, 0x7C, 0x7E: return true
        default: return false
        }
    }
}
