/// The connection manager's path normalisation (`normalize_path`, `merge_slashes`,
/// `path_with_escaped_slashes_action`), applied to a request's path before routing and filters, as Envoy's
/// `ConnectionManagerUtility::maybeNormalizePath` does, in its order: escaped slashes first, then the RFC 3986
/// normalisation, then merging slashes. The query is left as it is.
public struct PathNormalization: Sendable, Equatable {
    /// `path_with_escaped_slashes_action`: what a path holding `%2F` or `%5C` (any case) gets.
    public enum EscapedSlashes: String, Sendable, CaseIterable {
        /// IMPLEMENTATION_SPECIFIC_DEFAULT and KEEP_UNCHANGED: left as they are.
        case keep
        /// REJECT_REQUEST: 400.
        case reject
        /// UNESCAPE_AND_REDIRECT: a redirect to the path with them unescaped.
        case redirect
        /// UNESCAPE_AND_FORWARD: unescaped, and the request goes on.
        case forward
    }

    public var normalizePath = false
    public var mergeSlashes = false
    public var escapedSlashes = EscapedSlashes.keep

    public init(normalizePath: Bool = false, mergeSlashes: Bool = false, escapedSlashes: EscapedSlashes = .keep) {
        self.normalizePath = normalizePath
        self.mergeSlashes = mergeSlashes
        self.escapedSlashes = escapedSlashes
    }

    /// Nothing to do for any path.
    public var isIdentity: Bool { !normalizePath && !mergeSlashes && escapedSlashes == .keep }

    public enum Outcome: Equatable, Sendable {
        /// Route on this path (the same as given when nothing changed).
        case `continue`(String)
        /// Answer 400 (a path with escaped slashes under REJECT_REQUEST).
        case reject
        /// Redirect to this path (escaped slashes under UNESCAPE_AND_REDIRECT).
        case redirect(String)
    }

    /// What becomes of `path` (origin form, with its query).
    public func apply(_ path: String) -> Outcome {
        if isIdentity { return .continue(path) }
        var bytes = Array(path.utf8)
        let queryStart = bytes.firstIndex(of: UInt8(ascii: "?")) ?? bytes.count
        let query = Array(bytes[queryStart...])
        bytes.removeSubrange(queryStart...)
        var redirect = false
        if escapedSlashes != .keep, Self.unescapeSlashes(&bytes) {
            switch escapedSlashes {
            case .reject: return .reject
            case .redirect: redirect = true
            case .forward, .keep: break
            }
        }
        if normalizePath { bytes = Self.canonical(bytes) }
        if mergeSlashes { bytes = Self.mergingSlashes(bytes) }
        bytes.append(contentsOf: query)
        let result = String(decoding: bytes, as: UTF8.self)
        return redirect ? .redirect(result) : .continue(result)
    }

    /// `%2F` → `/` and `%5C` → `\` (any case); whether there was one.
    static func unescapeSlashes(_ bytes: inout [UInt8]) -> Bool {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var found = false
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count {
                let a = bytes[i + 1], b = bytes[i + 2] | 0x20
                if a == UInt8(ascii: "2") && b == UInt8(ascii: "f") {
                    out.append(UInt8(ascii: "/"))
                    found = true
                    i += 3
                    continue
                }
                if a == UInt8(ascii: "5") && b == UInt8(ascii: "c") {
                    out.append(UInt8(ascii: "\\"))
                    found = true
                    i += 3
                    continue
                }
            }
            out.append(bytes[i])
            i += 1
        }
        if found { bytes = out }
        return found
    }

    /// RFC 3986 normalisation as Envoy's canonical path (Chromium's URL canonicaliser) does it: `\` is `/`,
    /// percent-escapes of unreserved characters are decoded (the others stay as written), and the `.` and `..`
    /// segments (also written `%2E`) are removed; empty segments stay.
    static func canonical(_ input: [UInt8]) -> [UInt8] {
        // Escapes first, so that an escaped dot counts as a dot.
        var decoded: [UInt8] = []
        decoded.reserveCapacity(input.count)
        var i = 0
        while i < input.count {
            let c = input[i]
            if c == UInt8(ascii: "%"), i + 2 < input.count, let hi = hex(input[i + 1]), let lo = hex(input[i + 2]) {
                let value = hi << 4 | lo
                if isUnreserved(value) {
                    decoded.append(value)
                } else {
                    // Kept as written, hex case included (Envoy 1.40 forwards `%2f` as `%2f`).
                    decoded.append(contentsOf: input[i..<(i + 3)])
                }
                i += 3
                continue
            }
            decoded.append(c == UInt8(ascii: "\\") ? UInt8(ascii: "/") : c)
            i += 1
        }
        // Dot segments (RFC 3986 5.2.4), segment by segment.
        var segments: [ArraySlice<UInt8>] = []
        let parts = decoded.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        // parts[0] is what precedes the first slash (empty for an origin-form path).
        var trailingSlash = false
        for (index, part) in parts.enumerated() where index > 0 || !part.isEmpty {
            let last = index == parts.count - 1
            if part.elementsEqual([UInt8(ascii: ".")]) {
                trailingSlash = last
                continue
            }
            if part.elementsEqual([UInt8(ascii: "."), UInt8(ascii: ".")]) {
                if !segments.isEmpty { segments.removeLast() }
                trailingSlash = last
                continue
            }
            segments.append(part)
            trailingSlash = false
        }
        var out: [UInt8] = []
        out.reserveCapacity(decoded.count)
        for segment in segments {
            out.append(UInt8(ascii: "/"))
            out.append(contentsOf: segment)
        }
        if out.isEmpty || trailingSlash { out.append(UInt8(ascii: "/")) }
        return out
    }

    /// Runs of `/` become one.
    static func mergingSlashes(_ input: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        for c in input where !(c == UInt8(ascii: "/") && out.last == UInt8(ascii: "/")) { out.append(c) }
        return out
    }

    private static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    private static func isUnreserved(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-") || c == UInt8(ascii: ".")
            || c == UInt8(ascii: "_") || c == UInt8(ascii: "~")
    }
}
