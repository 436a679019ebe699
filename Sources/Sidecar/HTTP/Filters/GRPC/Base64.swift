import NIOCore

/// Standard base64 (RFC 4648, padded), for gRPC-Web text mode. Decoding takes whole 4-character groups only, as
/// Envoy's `Base64::decode` does: a group with a bad character, or padding anywhere but at the end of the input,
/// makes the whole input invalid.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let values: [UInt8] = {
        var t = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = UInt8(i) }
        return t
    }()

    static func encode(_ bytes: ByteBufferView, into out: inout ByteBuffer) {
        var i = bytes.startIndex
        let end = bytes.endIndex
        out.reserveCapacity(minimumWritableBytes: (bytes.count + 2) / 3 * 4)
        while i < end {
            let b0 = bytes[i]
            let b1: UInt8? = bytes.index(after: i) < end ? bytes[bytes.index(after: i)] : nil
            let b2: UInt8? = bytes.index(i, offsetBy: 2) < end ? bytes[bytes.index(i, offsetBy: 2)] : nil
            out.writeInteger(alphabet[Int(b0 >> 2)])
            out.writeInteger(alphabet[Int((b0 & 0x03) << 4 | (b1 ?? 0) >> 4)])
            out.writeInteger(b1.map { alphabet[Int(($0 & 0x0F) << 2 | (b2 ?? 0) >> 6)] } ?? UInt8(ascii: "="))
            out.writeInteger(b2.map { alphabet[Int($0 & 0x3F)] } ?? UInt8(ascii: "="))
            i = bytes.index(i, offsetBy: min(3, bytes.distance(from: i, to: end)))
        }
    }

    /// Decodes `text`, whose length must be a multiple of 4, into `out`; false when it is not valid base64.
    static func decode(_ text: ByteBufferView, into out: inout ByteBuffer) -> Bool {
        guard text.count % 4 == 0 else { return false }
        let chars = Array(text)
        let pad = UInt8(ascii: "=")
        var i = 0
        while i < chars.count {
            let last = i + 4 == chars.count
            let c = chars[i..<i + 4]
            let v0 = values[Int(c[i])], v1 = values[Int(c[i + 1])]
            guard v0 != 0xFF, v1 != 0xFF else { return false }
            if c[i + 2] == pad {
                guard last, c[i + 3] == pad else { return false }
                out.writeInteger(v0 << 2 | v1 >> 4)
            } else if c[i + 3] == pad {
                let v2 = values[Int(c[i + 2])]
                guard last, v2 != 0xFF else { return false }
                out.writeInteger(v0 << 2 | v1 >> 4)
                out.writeInteger((v1 & 0x0F) << 4 | v2 >> 2)
            } else {
                let v2 = values[Int(c[i + 2])], v3 = values[Int(c[i + 3])]
                guard v2 != 0xFF, v3 != 0xFF else { return false }
                out.writeInteger(v0 << 2 | v1 >> 4)
                out.writeInteger((v1 & 0x0F) << 4 | v2 >> 2)
                out.writeInteger((v2 & 0x03) << 6 | v3)
            }
            i += 4
        }
        return true
    }
}
