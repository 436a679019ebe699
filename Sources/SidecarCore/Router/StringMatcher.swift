import Foundation

/// A compiled `safe_regex` (RE2 syntax, matched by ICU). RE2's `(?P<name>` is translated to ICU's `(?<name>`.
public final class CompiledRegex: @unchecked Sendable, CustomStringConvertible, Equatable {
    // NSRegularExpression is immutable and documented thread-safe for matching.
    package let pattern: String
    private let anchored: NSRegularExpression
    private let unanchored: NSRegularExpression

    public init(_ pattern: String) throws {
        if let construct = Self.nonRE2Construct(in: pattern) {
            throw RegexSyntaxError(pattern: pattern, reason: "\(construct) is not RE2 syntax")
        }
        self.pattern = pattern
        let icu = pattern.replacingOccurrences(of: "(?P<", with: "(?<")
        self.anchored = try NSRegularExpression(pattern: "\\A(?:\(icu))\\z")
        self.unanchored = try NSRegularExpression(pattern: icu)
    }

    public var description: String { pattern }

    /// Two regexes are the same config when their patterns are (config snapshots compare clusters).
    public static func == (a: CompiledRegex, b: CompiledRegex) -> Bool { a.pattern == b.pattern }

    package struct RegexSyntaxError: Error {
        package var pattern: String
        package var reason: String
    }

    /// ICU accepts constructs that RE2, Envoy's engine, rejects; a config using them must fail here as it
    /// fails in Envoy: backreferences, lookaround and atomic groups. (Octal escapes such as `\12`, which RE2
    /// accepts but ICU reads as backreferences, are rejected too.)
    package static func nonRE2Construct(in pattern: String) -> String? {
        var chars = Array(pattern)[...]
        var inClass = false
        while let c = chars.popFirst() {
            switch c {
            case "\\":
                guard let next = chars.popFirst() else { return nil }
                if next == "Q" {
                    // \Q...\E is literal text.
                    while let q = chars.popFirst() {
                        if q == "\\", chars.first == "E" { chars.removeFirst(); break }
                    }
                } else if let d = next.wholeNumberValue, d > 0, next.isASCII {
                    // RE2 has no backreferences; it reads \1…\7 followed by more octal digits as an octal
                    // escape, which ICU would read as a backreference. Reject both rather than differ.
                    return "the escape \\\(next) (a backreference, or an octal escape)"
                }
            case "[" where !inClass:
                inClass = true
                // A ']' right after '[' or '[^' is a literal member.
                if chars.first == "^" { chars.removeFirst() }
                if chars.first == "]" { chars.removeFirst() }
            case "]" where inClass:
                inClass = false
            case "(" where !inClass && chars.first == "?":
                let rest = String(chars.dropFirst().prefix(2))
                if rest.hasPrefix("=") || rest.hasPrefix("!") { return "lookahead '(?\(rest.prefix(1))'" }
                if rest == "<=" || rest == "<!" { return "lookbehind '(?\(rest)'" }
                if rest.hasPrefix(">") { return "the atomic group '(?>'" }
            default:
                break
            }
        }
        return nil
    }

    /// RE2's FullMatch: the whole input must match.
    public func fullMatch(_ s: String) -> Bool {
        let ns = s as NSString
        return anchored.firstMatch(in: s, range: NSRange(location: 0, length: ns.length)) != nil
    }

    /// True when the pattern matches anywhere in the input (admin `?filter=`).
    public func partialMatch(_ s: String) -> Bool {
        let ns = s as NSString
        return unanchored.firstMatch(in: s, range: NSRange(location: 0, length: ns.length)) != nil
    }

    /// Replaces every match; `\1`-style references in `substitution` name capture groups, as in Envoy.
    public func replaceAll(in s: String, with substitution: String) -> String {
        let ns = s as NSString
        return unanchored.stringByReplacingMatches(
            in: s, range: NSRange(location: 0, length: ns.length), withTemplate: Self.template(substitution))
    }

    package static func template(_ envoy: String) -> String {
        var out = ""
        var it = envoy.makeIterator()
        while let c = it.next() {
            if c == "$" {
                out += "\\$"
            } else if c == "\\" {
                if let n = it.next() {
                    if n.isNumber { out += "$\(n)" } else { out += "\\\(n)" }
                } else {
                    out += "\\\\"
                }
            } else {
                out.append(c)
            }
        }
        return out
    }
}

/// `envoy.type.matcher.v3.StringMatcher`.
public struct StringMatcher: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case exact(String)
        case prefix(String)
        case suffix(String)
        case contains(String)
        case regex(CompiledRegex)
    }

    public var kind: Kind
    public var ignoreCase: Bool

    public func matches(_ input: String) -> Bool {
        switch kind {
        case .exact(let s):
            return ignoreCase ? input.lowercased() == s.lowercased() : input == s
        case .prefix(let s):
            return ignoreCase ? input.lowercased().hasPrefix(s.lowercased()) : input.utf8.starts(with: s.utf8)
        case .suffix(let s):
            return ignoreCase ? input.lowercased().hasSuffix(s.lowercased()) : input.utf8.reversed().starts(with: s.utf8.reversed())
        case .contains(let s):
            return ignoreCase ? input.lowercased().contains(s.lowercased()) : input.contains(s)
        case .regex(let r):
            return r.fullMatch(input)
        }
    }
}

extension StringMatcher {
    package static func decode(_ value: ConfigValue) throws -> StringMatcher {
        let obj = try value.object()
        try obj.unsupported(["custom"])
        let ignoreCase = try obj.optional("ignore_case")?.bool() ?? false
        guard let (key, v) = try obj.oneOf(["exact", "prefix", "suffix", "contains", "safe_regex"]) else {
            fatalError("unreachable: oneOf is required")
        }
        let kind: Kind
        switch key {
        case "exact": kind = .exact(try v.string())
        case "prefix": kind = .prefix(try v.nonEmptyString())
        case "suffix": kind = .suffix(try v.nonEmptyString())
        case "contains": kind = .contains(try v.nonEmptyString())
        default: kind = .regex(try decodeRegexMatcher(v))
        }
        if ignoreCase, case .regex = kind {
            throw value.error("ignore_case has no effect on safe_regex; Envoy rejects this combination")
        }
        try obj.finish()
        return StringMatcher(kind: kind, ignoreCase: ignoreCase)
    }

    /// `envoy.type.matcher.v3.RegexMatcher`: `{regex, google_re2?}`.
    package static func decodeRegexMatcher(_ value: ConfigValue) throws -> CompiledRegex {
        let obj = try value.object()
        if let g = obj.optional("google_re2") {
            let go = try g.object()
            try go.unsupported(["max_program_size"])
            try go.finish()
        }
        let rv = try obj.required("regex")
        let pattern = try rv.string()
        try obj.finish()
        do {
            return try CompiledRegex(pattern)
        } catch let e as CompiledRegex.RegexSyntaxError {
            throw rv.error("invalid regex '\(pattern)': \(e.reason)")
        } catch {
            throw rv.error("invalid regex '\(pattern)'")
        }
    }
}
