/// The argument of `%START_TIME(...)%`: Envoy's `DateFormatter`, strftime in UTC plus `%s` (epoch seconds) and
/// `%Nf` / `%f` (the first N, default 9, digits of the fraction of the second), with absl's `%ENS` (seconds with
/// N fractional digits), `%Ez` and `%E4Y`. Parsed once; a specifier Pilotfish does not render is refused at load
/// (Envoy would pass some of them to strftime), so a format never renders differently without saying so.
public struct StartTimeFormat: Sendable, Equatable {
    package enum Segment: Sendable, Equatable {
        case literal(String)
        case year, year2, century, month, day, daySpacePadded, dayOfYear, hour24, hour24SpacePadded, hour12,
             hour12SpacePadded, amPM, minute, second, epochSeconds, weekdayShort, weekdayLong, weekdayMonday1,
             weekdaySunday0, monthShort, monthLong, zoneName, zoneOffset, zoneOffsetColon
        /// The first `digits` digits of the nanoseconds.
        case fraction(digits: Int)
        /// Seconds, then `.` and `digits` fractional digits (`%E3S`).
        case secondsWithFraction(digits: Int)
    }

    package let segments: [Segment]

    /// Envoy's default `%START_TIME%`: `%Y-%m-%dT%H:%M:%E3SZ`, e.g. 2026-12-05T21:55:08.190Z.
    public static let `default` = StartTimeFormat(segments: [
        .year, .literal("-"), .month, .literal("-"), .day, .literal("T"), .hour24, .literal(":"), .minute,
        .literal(":"), .secondsWithFraction(digits: 3), .literal("Z"),
    ])

    package init(segments: [Segment]) {
        self.segments = segments
    }

    /// Throws a message naming the specifier that is not supported.
    package init(parsing text: String) throws(FormatSyntaxError) {
        if text.contains("\n") {
            throw FormatSyntaxError("START_TIME format '\(text)' contains a newline")
        }
        var segments: [Segment] = []
        var literal = ""
        var chars = Substring(text)
        func flush() {
            if !literal.isEmpty { segments.append(.literal(literal)); literal = "" }
        }
        while let c = chars.popFirst() {
            guard c == "%" else { literal.append(c); continue }
            guard let spec = chars.popFirst() else {
                throw FormatSyntaxError("START_TIME format '\(text)' ends with a lone '%'")
            }
            let segment: Segment
            switch spec {
            case "%": literal.append("%"); continue
            case "n": literal.append("\n"); continue
            case "t": literal.append("\t"); continue
            case "Y": segment = .year
            case "y": segment = .year2
            case "C": segment = .century
            case "m": segment = .month
            case "d": segment = .day
            case "e": segment = .daySpacePadded
            case "j": segment = .dayOfYear
            case "H": segment = .hour24
            case "k": segment = .hour24SpacePadded
            case "I": segment = .hour12
            case "l": segment = .hour12SpacePadded
            case "p": segment = .amPM
            case "M": segment = .minute
            case "S": segment = .second
            case "s": segment = .epochSeconds
            case "a": segment = .weekdayShort
            case "A": segment = .weekdayLong
            case "u": segment = .weekdayMonday1
            case "w": segment = .weekdaySunday0
            case "b", "h": segment = .monthShort
            case "B": segment = .monthLong
            case "Z": segment = .zoneName
            case "z": segment = .zoneOffset
            case "f": segment = .fraction(digits: 9)
            case "F":
                flush()
                segments += [.year, .literal("-"), .month, .literal("-"), .day]
                continue
            case "T":
                flush()
                segments += [.hour24, .literal(":"), .minute, .literal(":"), .second]
                continue
            case "R":
                flush()
                segments += [.hour24, .literal(":"), .minute]
                continue
            case "D":
                flush()
                segments += [.month, .literal("/"), .day, .literal("/"), .year2]
                continue
            case "1"..."9":
                guard chars.popFirst() == "f" else {
                    throw FormatSyntaxError(
                        "START_TIME specifier '%\(spec)…' is not supported by Pilotfish (only %\(spec)f)")
                }
                segment = .fraction(digits: spec.wholeNumberValue!)
            case "E":
                switch (chars.first, chars.dropFirst().first) {
                case ("z"?, _):
                    chars = chars.dropFirst()
                    segment = .zoneOffsetColon
                case ("4"?, "Y"?):
                    chars = chars.dropFirst(2)
                    segment = .year
                case (let d?, "S"?) where ("1"..."9").contains(d):
                    chars = chars.dropFirst(2)
                    segment = .secondsWithFraction(digits: d.wholeNumberValue!)
                default:
                    throw FormatSyntaxError("START_TIME specifier '%E\(chars.prefix(2))' is not supported by Pilotfish")
                }
            default:
                throw FormatSyntaxError("START_TIME specifier '%\(spec)' is not supported by Pilotfish")
            }
            flush()
            segments.append(segment)
        }
        flush()
        self.segments = segments
    }

    private static let weekdays = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
    private static let months = [
        "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
        "November", "December",
    ]

    /// `nanosecondsSinceEpoch`: wall-clock time, rendered in UTC as Envoy does.
    public func render(nanosecondsSinceEpoch ns: Int64, into out: inout [UInt8]) {
        let seconds = ns >= 0 ? ns / 1_000_000_000 : (ns - 999_999_999) / 1_000_000_000
        let nanos = Int(ns - seconds * 1_000_000_000)
        let t = UTCTime(secondsSinceEpoch: seconds)
        for segment in segments {
            switch segment {
            case .literal(let s): out.appendText(s)
            case .year: out.appendDecimal(t.year)
            case .year2: out.appendDecimal(t.year % 100, width: 2)
            case .century: out.appendDecimal(t.year / 100, width: 2)
            case .month: out.appendDecimal(t.month, width: 2)
            case .day: out.appendDecimal(t.day, width: 2)
            case .daySpacePadded: out.appendDecimal(t.day, width: 2, fill: 0x20)
            case .dayOfYear: out.appendDecimal(t.dayOfYear + 1, width: 3)
            case .hour24: out.appendDecimal(t.hour, width: 2)
            case .hour24SpacePadded: out.appendDecimal(t.hour, width: 2, fill: 0x20)
            case .hour12: out.appendDecimal(Self.hour12(t.hour), width: 2)
            case .hour12SpacePadded: out.appendDecimal(Self.hour12(t.hour), width: 2, fill: 0x20)
            case .amPM: out.appendText(t.hour < 12 ? "AM" : "PM")
            case .minute: out.appendDecimal(t.minute, width: 2)
            case .second: out.appendDecimal(t.second, width: 2)
            case .epochSeconds: out.appendDecimal(seconds)
            case .weekdayShort: out.appendText(Self.weekdays[t.weekday].prefix(3))
            case .weekdayLong: out.appendText(Self.weekdays[t.weekday])
            case .weekdayMonday1: out.appendDecimal(t.weekday == 0 ? 7 : t.weekday)
            case .weekdaySunday0: out.appendDecimal(t.weekday)
            case .monthShort: out.appendText(Self.months[t.month - 1].prefix(3))
            case .monthLong: out.appendText(Self.months[t.month - 1])
            case .zoneName: out.appendText("UTC")
            case .zoneOffset: out.appendText("+0000")
            case .zoneOffsetColon: out.appendText("+00:00")
            case .fraction(let digits): Self.fraction(nanos, digits, into: &out)
            case .secondsWithFraction(let digits):
                out.appendDecimal(t.second, width: 2)
                out.append(UInt8(ascii: "."))
                Self.fraction(nanos, digits, into: &out)
            }
        }
    }

    /// The same, as text (tests, and callers that want a String).
    public func render(nanosecondsSinceEpoch ns: Int64, into out: inout String) {
        var bytes: [UInt8] = []
        render(nanosecondsSinceEpoch: ns, into: &bytes)
        out += String(decoding: bytes, as: UTF8.self)
    }

    private static func hour12(_ h: Int) -> Int { h % 12 == 0 ? 12 : h % 12 }

    private static func fraction(_ nanos: Int, _ digits: Int, into out: inout [UInt8]) {
        var divisor = 1
        for _ in digits..<9 { divisor *= 10 }
        out.appendDecimal(nanos / divisor, width: digits)
    }
}

/// A moment in UTC, split into calendar fields by arithmetic on the day number (the proleptic Gregorian
/// calendar, as gmtime gives it): no libc call, no lock, nothing that reads the time zone.
struct UTCTime: Equatable {
    var year: Int
    /// 1...12
    var month: Int
    /// 1...31
    var day: Int
    var hour: Int
    var minute: Int
    var second: Int
    /// 0 is Sunday.
    var weekday: Int
    /// 0 is January 1st.
    var dayOfYear: Int
}

extension UTCTime {
    init(secondsSinceEpoch s: Int64) {
        var days = s / 86_400
        var rest = s - days * 86_400
        if rest < 0 {
            rest += 86_400
            days -= 1
        }
        // 1970-01-01 was a Thursday.
        let w = (days + 4) % 7
        let (year, month, day) = Self.civil(fromDays: days)
        self.init(year: year, month: month, day: day, hour: Int(rest / 3600), minute: Int(rest % 3600 / 60),
                  second: Int(rest % 60), weekday: Int(w < 0 ? w + 7 : w),
                  dayOfYear: Int(days - Self.days(fromCivil: year, 1, 1)))
    }

    /// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to year, month, day.
    static func civil(fromDays days: Int64) -> (Int, Int, Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        return (Int(y), Int(m), Int(d))
    }

    /// `days_from_civil`: the inverse.
    static func days(fromCivil year: Int, _ month: Int, _ day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
