import Testing

@testable import SidecarCore

/// The word-at-a-time scan for bytes a JSON string must escape, against the byte rule it stands for.
@Suite struct JSONEscapeTests {
    /// Every byte value at every position of strings up to 20 bytes long (the eight-byte steps, their tails and
    /// the offsets in between), in a string of bytes that need nothing.
    @Test func theScanFindsTheFirstNeededByteWhereverItIs() {
        for length in 1...20 {
            for position in 0..<length {
                for value in 0...255 {
                    var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: length)
                    bytes[position] = UInt8(value)
                    let expected = JSONEscape.needed(UInt8(value)) ? position : length
                    let found = bytes.withUnsafeBytes { JSONEscape.firstNeeded(in: $0) }
                    #expect(found == expected, "byte \(value) at \(position) of \(length)")
                }
            }
        }
    }

    /// Bytes next to the three ranges' edges, in every pair, so a borrow between neighbours cannot hide a hit or
    /// make one.
    @Test func neighbouringBytesDoNotHideOrMakeAHit() {
        let edges: [UInt8] = [0x00, 0x01, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x5B, 0x5C, 0x5D, 0x7F, 0x80, 0xA0, 0xA2, 0xDC, 0xFF]
        for a in edges {
            for b in edges {
                for start in 0..<8 {
                    var bytes = [UInt8](repeating: UInt8(ascii: "z"), count: 16)
                    bytes[start] = a
                    bytes[start + 1] = b
                    let expected = bytes.firstIndex(where: JSONEscape.needed) ?? bytes.count
                    #expect(bytes.withUnsafeBytes { JSONEscape.firstNeeded(in: $0) } == expected)
                    #expect(bytes.withUnsafeBytes { JSONEscape.firstNeeded(in: $0, from: start + 1) }
                        == (bytes[(start + 1)...].firstIndex(where: JSONEscape.needed) ?? bytes.count))
                }
            }
        }
    }

    @Test func escapingInPlaceLeavesCleanTextAloneAndEscapesTheRest() {
        var clean = Array("prefix:GET /a/b?c=d HTTP/1.1 üñí".utf8)
        let before = clean
        clean.escapeJSON(from: 7)
        #expect(clean == before)

        var dirty = Array("k:va\"l\\ue\n\t\u{01}end".utf8)
        dirty.escapeJSON(from: 2)
        #expect(String(decoding: dirty, as: UTF8.self) == "k:va\\\"l\\\\ue\\n\\t\\u0001end")
    }
}
