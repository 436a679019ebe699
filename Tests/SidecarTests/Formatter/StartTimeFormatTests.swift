#if canImport(Glibc)
import Glibc
#endif
import Testing

@testable import Sidecar
@testable import SidecarCore
@testable import SidecarUpstream

/// `%START_TIME(...)%` formats, checked against what Envoy 1.40 printed for the same instant.
@Suite struct StartTimeFormatTests {
    /// 2026-12-05T21:55:08.190630123Z, a Saturday.
    static let instant: Int64 = 1_796_507_708_190_630_123

    static func render(_ format: String, _ ns: Int64 = instant) throws -> String {
        var out = ""
        try StartTimeFormat(parsing: format).render(nanosecondsSinceEpoch: ns, into: &out)
        return out
    }

    @Test func envoysDefaultIsRFC3339WithMilliseconds() {
        var out = ""
        StartTimeFormat.default.render(nanosecondsSinceEpoch: Self.instant, into: &out)
        #expect(out == "2026-12-05T21:55:08.190Z")
    }

    @Test func fractionsAndEpochSeconds() throws {
        #expect(try Self.render("%f|%1f|%3f|%6f|%9f") == "190630123|1|190|190630|190630123")
        #expect(try Self.render("%s.%3f %s%3f") == "1796507708.190 1796507708190")
        #expect(try Self.render("%E3S %E6S") == "08.190 08.190630")
    }

    @Test func strftimeFieldsInUTC() throws {
        #expect(try Self.render("%Y-%m-%dT%H:%M:%S %a %b %d %e %j %H%M%S %Z %z")
            == "2026-12-05T21:55:08 Sat Dec 05  5 339 215508 UTC +0000")
        #expect(try Self.render("%A %B %y %C %I%p %u %w %F %T %D %R %Ez %%")
            == "Saturday December 26 20 09PM 6 6 2026-12-05 21:55:08 12/05/26 21:55 +00:00 %")
    }

    @Test func beforeTheEpoch() throws {
        #expect(try Self.render("%Y-%m-%dT%H:%M:%S.%3f", -1_500_000_000) == "1969-12-31T23:59:58.500")
    }

    @Test func unknownSpecifiersAreRefused() {
        #expect(throws: FormatSyntaxError.self) { try StartTimeFormat(parsing: "%Q") }
        #expect(throws: FormatSyntaxError.self) { try StartTimeFormat(parsing: "%Es") }
        #expect(throws: FormatSyntaxError.self) { try StartTimeFormat(parsing: "abc%") }
        #expect(throws: FormatSyntaxError.self) { try StartTimeFormat(parsing: "%H\n") }
    }

    /// The calendar arithmetic against glibc's gmtime_r, over 400 years either side of the epoch (leap days,
    /// century rules, negative times) and at the edges of days and years.
    @Test func calendarArithmeticMatchesGmtime() {
        var random = FastRandom()
        var instants: [Int64] = [0, -1, 86_399, 86_400, -86_400, -86_401, 951_782_400, 951_868_799, 4_107_542_400,
                                 -2_203_891_200, 253_402_300_799]
        for _ in 0..<20_000 { instants.append(Int64(random.next() % 25_245_000_000) - 12_622_500_000) }
        for s in instants {
            var t = time_t(s)
            var expected = tm()
            gmtime_r(&t, &expected)
            let got = UTCTime(secondsSinceEpoch: s)
            let want = UTCTime(year: Int(expected.tm_year) + 1900, month: Int(expected.tm_mon) + 1,
                               day: Int(expected.tm_mday), hour: Int(expected.tm_hour), minute: Int(expected.tm_min),
                               second: Int(expected.tm_sec), weekday: Int(expected.tm_wday),
                               dayOfYear: Int(expected.tm_yday))
            #expect(got == want, "at \(s)")
            if got != want { break }
        }
    }

    @Test func decimalsWithWidthAndSign() {
        var out: [UInt8] = []
        out.appendDecimal(0)
        out.appendText("|")
        out.appendDecimal(7, width: 3)
        out.appendText("|")
        out.appendDecimal(7, width: 2, fill: 0x20)
        out.appendText("|")
        out.appendDecimal(UInt64.max)
        out.appendText("|")
        out.appendDecimal(Int64.min)
        out.appendText("|")
        out.appendDecimal(-42, width: 4)
        out.appendText("|")
        out.appendDecimal(12345, width: 2)
        #expect(String(decoding: out, as: UTF8.self)
            == "0|007| 7|18446744073709551615|-9223372036854775808|-042|12345")
    }
}
