import Testing

@testable import SidecarCore

@Suite struct ShortASCIIDecimalTests {
    @Test func decimalsAreTheIntegersDescriptions() {
        var values: [UInt64] = [0, 1, 9, 10, 99, 100, 200, 404, 503, 999, 1000, 65_535, UInt64(UInt32.max), UInt64.max]
        var v: UInt64 = 1
        for _ in 0..<19 {
            values += [v - 1, v, v + 1]
            v *= 10
        }
        for value in values {
            #expect(ShortASCII.decimal(value) == String(value))
        }
    }
}
