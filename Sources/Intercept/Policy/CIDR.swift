import MeshCapture

/// An IPv4 or IPv6 network in prefix notation. A bare address means a single host (/32 or /128).
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public enum Family: Sendable { case ipv4, ipv6 }

    /// Network address bytes in network order: 4 for IPv4, 16 for IPv6.
    public let address: [UInt8]
    public let prefixLength: Int

    public var family: Family { address.count == 4 ? .ipv4 : .ipv6 }

    public init(parsing text: String) throws(PolicyError) {
        let trimmed = text.trimmingWhitespace()
        let parts = trimmed.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let addressText = parts.first, !addressText.isEmpty else {
            throw PolicyError("'\(text)' is not a CIDR; expected an address with an optional /prefix, e.g. 10.0.0.0/8 or fd00::/8")
        }
        guard let bytes = IPAddressText.parse(String(addressText)) else {
            throw PolicyError("'\(text)' is not a CIDR: '\(addressText)' is not an IPv4 or IPv6 address")
        }
        let maxPrefix = bytes.count * 8
        var prefix = maxPrefix
        if parts.count == 2 {
            guard let p = Int(parts[1]), (0...maxPrefix).contains(p) else {
                throw PolicyError("'\(text)' is not a CIDR: prefix length '\(parts[1])' must be a number from 0 to \(maxPrefix)")
            }
            prefix = p
        }
        let masked = CIDR.mask(bytes, prefix)
        guard masked == bytes else {
            let suggestion = CIDR(uncheckedAddress: masked, prefixLength: prefix)
            throw PolicyError("'\(text)' has bits set past its /\(prefix) prefix; did you mean \(suggestion)?")
        }
        self.address = bytes
        self.prefixLength = prefix
    }

    init(uncheckedAddress: [UInt8], prefixLength: Int) {
        self.address = uncheckedAddress
        self.prefixLength = prefixLength
    }

    public static let ipv4Loopback = CIDR(uncheckedAddress: [127, 0, 0, 1], prefixLength: 32)
    public static let ipv6Loopback = CIDR(uncheckedAddress: Array(repeating: 0, count: 15) + [1], prefixLength: 128)
    /// The source address of the sidecar's inbound passthrough connections (Istio's choice).
    public static let ipv4InboundPassthrough = CIDR(uncheckedAddress: InboundPassthrough.ipv4, prefixLength: 32)
    public static let ipv6InboundPassthrough = CIDR(uncheckedAddress: InboundPassthrough.ipv6, prefixLength: 128)

    public var isHost: Bool { prefixLength == address.count * 8 }

    /// Netmask bytes for this prefix.
    public var maskBytes: [UInt8] { CIDR.mask(Array(repeating: 0xff, count: address.count), prefixLength) }

    static func mask(_ bytes: [UInt8], _ prefix: Int) -> [UInt8] {
        var out = bytes
        for i in 0..<out.count {
            let bitsHere = max(0, min(8, prefix - i * 8))
            let m: UInt8 = bitsHere == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bitsHere))
            out[i] &= m
        }
        return out
    }

    /// The address in its usual text form (dotted quad, or RFC 5952 IPv6).
    public var addressText: String { IPAddressText.format(address) }

    /// Address with the prefix, omitting it for single hosts as nft and iptables-save print them.
    public var description: String {
        isHost ? addressText : "\(addressText)/\(prefixLength)"
    }

    /// Always with the prefix (iptables wants `/32`).
    public var prefixedDescription: String { "\(addressText)/\(prefixLength)" }
}

enum IPAddressText {
    static func parse(_ text: String) -> [UInt8]? {
        if text.contains(":") { return parseIPv6(text) }
        return parseIPv4(text)
    }

    static func parseIPv4(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), let v = UInt8(p) else { return nil }
            out.append(v)
        }
        return out
    }

    static func parseIPv6(_ text: String) -> [UInt8]? {
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ s: String) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            let pieces = s.split(separator: ":", omittingEmptySubsequences: false)
            for (i, piece) in pieces.enumerated() {
                if piece.contains("."), i == pieces.count - 1, let v4 = parseIPv4(String(piece)) {
                    out.append(UInt16(v4[0]) << 8 | UInt16(v4[1]))
                    out.append(UInt16(v4[2]) << 8 | UInt16(v4[3]))
                    continue
                }
                guard (1...4).contains(piece.count), let v = UInt16(piece, radix: 16) else { return nil }
                out.append(v)
            }
            return out
        }
        guard let head = groups(halves[0]) else { return nil }
        var all: [UInt16]
        if halves.count == 2 {
            guard let tail = groups(halves[1]), head.count + tail.count <= 7 else { return nil }
            all = head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        } else {
            guard head.count == 8 else { return nil }
            all = head
        }
        return all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] }
    }

    static func format(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        var groups: [UInt16] = []
        for i in stride(from: 0, to: 16, by: 2) { groups.append(UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1])) }
        // RFC 5952: compress the longest run (length >= 2) of zero groups, the first one on ties.
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > bestLen { bestStart = i; bestLen = j - i }
                i = j
            } else { i += 1 }
        }
        let hex = groups.map { String($0, radix: 16) }
        if bestLen < 2 { return hex.joined(separator: ":") }
        let head = hex[0..<bestStart].joined(separator: ":")
        let tail = hex[(bestStart + bestLen)...].joined(separator: ":")
        return head + "::" + tail
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
