/// Envoy's tls_inspector: is the connection's first data a TLS ClientHello, and if so which server name
/// (SNI) and application protocols (ALPN) does it ask for? Nothing is decrypted; the bytes are replayed.
package enum TLSInspector {
    /// Letters, digits, `-`, `.` and `_` (seen in the wild in service names).
    static func isHostNameByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"):
            return true
        default:
            return false
        }
    }

    package enum Verdict: Equatable {
        case needMore
        case notTLS
        case tls(serverName: String?, applicationProtocols: [String])
    }

    static let maxBytes = 64 * 1024

    package static func inspect(_ bytes: some Collection<UInt8>) -> Verdict {
        let data = Array(bytes.prefix(maxBytes))
        guard let first = data.first else { return .needMore }
        // A handshake record (22) carrying TLS 1.0-1.3 (legacy version 3.x).
        guard first == 0x16 else { return .notTLS }
        if data.count < 5 { return .needMore }
        guard data[1] == 3 else { return .notTLS }
        // The ClientHello may span records; gather handshake bytes across them.
        var handshake: [UInt8] = []
        var offset = 0
        var needed = Int.max
        while offset + 5 <= data.count && handshake.count < needed {
            guard data[offset] == 0x16 else { return .notTLS }
            let length = Int(data[offset + 3]) << 8 | Int(data[offset + 4])
            let end = offset + 5 + length
            handshake += data[(offset + 5)..<min(end, data.count)]
            if handshake.count >= 4 && needed == Int.max {
                guard handshake[0] == 1 else { return .notTLS }  // ClientHello
                needed = 4 + (Int(handshake[1]) << 16 | Int(handshake[2]) << 8 | Int(handshake[3]))
            }
            if end > data.count { break }
            offset = end
        }
        if handshake.count < max(needed, 4) {
            return data.count >= maxBytes ? .notTLS : .needMore
        }
        return parseClientHello(Array(handshake[4..<needed]))
    }

    private static func parseClientHello(_ b: [UInt8]) -> Verdict {
        var r = Reader(bytes: b)
        guard r.skip(2 + 32),  // legacy_version, random
            let sessionLength = r.u8(), r.skip(Int(sessionLength)),
            let suitesLength = r.u16(), r.skip(Int(suitesLength)),
            let compressionLength = r.u8(), r.skip(Int(compressionLength))
        else { return .notTLS }
        var serverName: String?
        var alpn: [String] = []
        guard let extensionsLength = r.u16() else { return .tls(serverName: nil, applicationProtocols: []) }
        var ext = Reader(bytes: r.take(Int(extensionsLength)) ?? [])
        while let type = ext.u16(), let length = ext.u16(), let body = ext.take(Int(length)) {
            var e = Reader(bytes: body)
            switch type {
            case 0:  // server_name
                guard let listLength = e.u16(), var list = e.take(Int(listLength)).map({ Reader(bytes: $0) }) else { break }
                while let nameType = list.u8(), let nameLength = list.u16(), let name = list.take(Int(nameLength)) {
                    // A host name (RFC 6066: no trailing dot, ASCII): anything else is ignored, since the name
                    // reaches filter chain matching, RBAC and header values (%REQUESTED_SERVER_NAME%).
                    if nameType == 0, !name.isEmpty, name.allSatisfy(Self.isHostNameByte) {
                        serverName = String(decoding: name, as: UTF8.self).lowercased()
                    }
                }
            case 16:  // application_layer_protocol_negotiation
                guard let listLength = e.u16(), var list = e.take(Int(listLength)).map({ Reader(bytes: $0) }) else { break }
                while let l = list.u8(), let p = list.take(Int(l)) { alpn.append(String(decoding: p, as: UTF8.self)) }
            default:
                break
            }
        }
        return .tls(serverName: serverName, applicationProtocols: alpn)
    }

    private struct Reader {
        let bytes: [UInt8]
        var at = 0
        init(bytes: [UInt8]) { self.bytes = bytes }
        mutating func u8() -> UInt8? {
            guard at < bytes.count else { return nil }
            defer { at += 1 }
            return bytes[at]
        }
        mutating func u16() -> UInt16? {
            guard at + 2 <= bytes.count else { return nil }
            defer { at += 2 }
            return UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1])
        }
        mutating func skip(_ n: Int) -> Bool {
            guard at + n <= bytes.count else { return false }
            at += n
            return true
        }
        mutating func take(_ n: Int) -> [UInt8]? {
            guard at + n <= bytes.count else { return nil }
            defer { at += n }
            return Array(bytes[at..<(at + n)])
        }
    }
}
