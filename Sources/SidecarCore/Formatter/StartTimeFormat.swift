#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

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
    public func render(nanosecondsSinceEpoch ns: Int64, into out: inout String) {
        var seconds = time_t(ns >= 0 ? ns / 1_000_000_000 : (ns - 999_999_999) / 1_000_000_000)
        let nanos = Int(ns - Int64(seconds) * 1_000_000_000)
        var t = tm()
        gmtime_r(&seconds, &t)
        for segment in segments {
            switch segment {
            case .literal(let s): out += s
            case .year: out += String(Int(t.tm_year) + 1900)
            case .year2: Self.pad(Int(t.tm_year + 1900) % 100, 2, into: &out)
            case .century: Self.pad((Int(t.tm_year) + 1900) / 100, 2, into: &out)
            case .month: Self.pad(Int(t.tm_mon) + 1, 2, into: &out)
            case .day: Self.pad(Int(t.tm_mday), 2, into: &out)
            case .daySpacePadded: Self.pad(Int(t.tm_mday), 2, with: " ", into: &out)
            case .dayOfYear: Self.pad(Int(t.tm_yday) + 1, 3, into: &out)
            case .hour24: Self.pad(Int(t.tm_hour), 2, into: &out)
            case .hour24SpacePadded: Self.pad(Int(t.tm_hour), 2, with: " ", into: &out)
            case .hour12: Self.pad(Self.hour12(Int(t.tm_hour)), 2, into: &out)
            case .hour12SpacePadded: Self.pad(Self.hour12(Int(t.tm_hour)), 2, with: " ", into: &out)
            case .amPM: out += t.tm_hour < 12 ? "AM" : "PM"
            case .minute: Self.pad(Int(t.tm_min), 2, into: &out)
            case .second: Self.pad(Int(t.tm_sec), 2, into: &out)
            case .epochSeconds: out += String(seconds)
            case .weekdayShort: out += Self.weekdays[Int(t.tm_wday)].prefix(3)
            case .weekdayLong: out += Self.weekdays[Int(t.tm_wday)]
            case .weekdayMonday1: out += String(t.tm_wday == 0 ? 7 : Int(t.tm_wday))
            case .weekdaySunday0: out += String(t.tm_wday)
            case .monthShort: out += Self.months[Int(t.tm_mon)].prefix(3)
            case .monthLong: out += Self.months[Int(t.tm_mon)]
            case .zoneName: out += "UTC"
            case .zoneOffset: out += "+0000"
            case .zoneOffsetColon: out += "+00:00"
            case .fraction(let digits): Self.fraction(nanos, digits, into: &out)
            case .secondsWithFraction(let digits):
                Self.pad(Int(t.tm_sec), 2, into: &out)
                out += "."
                Self.fraction(nanos, digits, into: &out)
            }
        }
    }

    private static func hour12(_ h: Int) -> Int { h % 12 == 0 ? 12 : h % 12 }

    private static func fraction(_ nanos: Int, _ digits: Int, into out: inout String) {
        var divisor = 1
        for _ in digits..<9 { divisor *= 10 }
        pad(nanos / divisor, digits, into: &out)
    }

    private static func pad(_ value: Int, _ width: Int, with fill: Character = "0", into out: inout String) {
        let s = String(value)
        if s.count < width { out += String(repeating: fill, count: width - s.count) }
        out += s
    }
}
