/// Config text that the proxy writes into HTTP headers or the request line: header names and values, the
/// server name, rewrites and redirects. Checked once at load, as Envoy's proto validation does
/// (`HTTP_HEADER_NAME` / `HTTP_HEADER_VALUE`): the proxy's outbound pipelines do not re-validate every header
/// they send (that cost several per cent of a proxied request), so nothing from the config may be able to
/// split a header or a request line. Everything else that reaches a header came through the HTTP parser.
extension ConfigValue {
    /// A string without CR, LF or NUL.
    package func headerValueText() throws -> String {
        let text = try string()
        if let bad = Self.firstControlCharacter(in: text) {
            throw error("'\(text.debugDescription.dropFirst().dropLast())' contains \(bad), which cannot be part of an HTTP header")
        }
        return text
    }

    /// Text that becomes part of a request target (path rewrites, path redirects): no space and no control
    /// character, which would end or split the request line.
    package func requestTargetText() throws -> String {
        let text = try string()
        for byte in text.utf8 where byte <= 0x20 || byte == 0x7F {
            throw error("'\(text.debugDescription.dropFirst().dropLast())' contains a space or control character, which cannot be part of a request path")
        }
        return text
    }

    /// A non-empty RFC 9110 token (`tchar`s only), as header names must be.
    package func headerNameText() throws -> String {
        let text = try nonEmptyString()
        for byte in text.utf8 where !Self.isTokenCharacter(byte) {
            throw error("header name '\(text)' contains '\(Character(Unicode.Scalar(byte)))', which is not allowed in an HTTP header name")
        }
        return text
    }

    /// The first CR, LF or NUL in `text`, named for an error message; nil when there is none. Bytes, not
    /// Characters: "\r\n" is one Character in Swift and would pass a Character comparison with "\r" or "\n".
    static func firstControlCharacter(in text: String) -> String? {
        for byte in text.utf8 {
            switch byte {
            case 0x0D: return "a carriage return"
            case 0x0A: return "a line feed"
            case 0x00: return "a NUL byte"
            default: continue
            }
        }
        return nil
    }

    /// RFC 9110 `tchar`: ALPHA / DIGIT / "!#$%&'*+-.^_`|~".
    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}
