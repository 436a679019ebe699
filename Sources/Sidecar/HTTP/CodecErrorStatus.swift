import NIOCore
import NIOHTTP1

/// The status Envoy 1.40 answers a request that the HTTP/1 parser refused, told from the parser's error and the bytes
/// it was parsing. NIO's llhttp errors are coarser than Envoy's answers: an unknown transfer coding and a header line
/// without its CR are both `.unknown`; an `HTTP/2.0` request line and an `HTTP/1.x` one are both `.invalidVersion`.
/// The bytes tell them apart:
/// - `.invalidVersion`: a request line without a version (HTTP/0.9) or with a well-formed version other than 1.0 and
///   1.1 gets 426 Upgrade Required; anything else (`HTTP/1.x`) 400.
/// - `.unknown`: a head with a `Transfer-Encoding` field gets 501 Not Implemented (RFC 9112 6.1: a transfer coding
///   the server does not understand), unless it also has a `Content-Length` or its lines end in a bare LF or fold
///   (obs-fold): those are 400.
/// - `.headerOverflow`: 431. Everything else: 400.
///
/// `input` is the read the parser was working on when it failed, from its start. A head that arrived over several
/// reads, or a bad request pipelined behind a good one in the same read, shows only its first line or another
/// request's: it gets 400, which closes the connection as the other answers do.
enum CodecErrorStatus {
    static func status(for error: HTTPParserError, input: ByteBuffer?) -> HTTPResponseStatus {
        switch error {
        case .headerOverflow:
            return .requestHeaderFieldsTooLarge
        case .invalidVersion:
            guard let input else { return .badRequest }
            return input.withUnsafeReadableBytes { unsupportedVersion(in: $0) } ? .upgradeRequired : .badRequest
        case .unknown:
            guard let input else { return .badRequest }
            return input.withUnsafeReadableBytes { unknownTransferCoding(in: $0) } ? .notImplemented : .badRequest
        default:
            return .badRequest
        }
    }

    /// Whether the first request line names no version (`GET /a`) or a version Envoy's codec answers 426 to:
    /// `HTTP/<digit>.<digit>` other than 1.0 and 1.1.
    static func unsupportedVersion(in bytes: UnsafeRawBufferPointer) -> Bool {
        var lines = Lines(bytes)
        guard let line = lines.next(skippingEmpty: true) else { return false }
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3, isMethod(parts[0]), isRequestTarget(parts[1]) else { return false }
        if parts.count == 2 { return true }
        let version = Array(parts[2])
        let prefix = Array("HTTP/".utf8)
        guard version.count == 8, version.starts(with: prefix), isDigit(version[5]), version[6] == UInt8(ascii: "."),
              isDigit(version[7]) else { return false }
        let major = version[5] - UInt8(ascii: "0"), minor = version[7] - UInt8(ascii: "0")
        return !(major == 1 && minor <= 1)
    }

    /// Whether the first head has a `Transfer-Encoding` field, no `Content-Length` (the two together are 400, as
    /// the parser also says), and its lines are otherwise whole: each ends in CRLF and none folds onto the one before.
    static func unknownTransferCoding(in bytes: UnsafeRawBufferPointer) -> Bool {
        var lines = Lines(bytes)
        guard let requestLine = lines.next(skippingEmpty: true), !lines.lastEndedInBareLF,
              !requestLine.isEmpty else { return false }
        var transferEncoding = false
        var contentLength = false
        while let line = lines.next(skippingEmpty: false) {
            if lines.lastEndedInBareLF { return false }
            if line.isEmpty { break }
            if line[line.startIndex] == UInt8(ascii: " ") || line[line.startIndex] == UInt8(ascii: "\t") {
                return false
            }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let name = UnsafeRawBufferPointer(rebasing: line[line.startIndex..<colon]).assumingMemoryBound(to: UInt8.self)
            if HopByHop.equalsLowercased(name, "transfer-encoding") { transferEncoding = true }
            if HopByHop.equalsLowercased(name, "content-length") { contentLength = true }
        }
        return transferEncoding && !contentLength
    }

    private static func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

    private static func isMethod(_ token: Slice<UnsafeRawBufferPointer>) -> Bool {
        !token.isEmpty && token.allSatisfy { ($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z")) || $0 == UInt8(ascii: "-") }
    }

    private static func isRequestTarget(_ token: Slice<UnsafeRawBufferPointer>) -> Bool {
        guard let first = token.first else { return false }
        return first == UInt8(ascii: "/") || first == UInt8(ascii: "*")
            || ((first | 0x20) >= UInt8(ascii: "a") && (first | 0x20) <= UInt8(ascii: "z"))
    }

    /// Lines split at LF, without their CR; `lastEndedInBareLF` says whether the line just returned ended in an LF
    /// without a CR before it. A last line without its LF is not returned (the head is incomplete there).
    private struct Lines {
        let bytes: UnsafeRawBufferPointer
        var position = 0
        var lastEndedInBareLF = false
        init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        mutating func next(skippingEmpty: Bool) -> Slice<UnsafeRawBufferPointer>? {
            while position < bytes.count {
                guard let lf = bytes[position...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
                let crlf = lf > position && bytes[lf - 1] == UInt8(ascii: "\r")
                let line = bytes[position..<(crlf ? lf - 1 : lf)]
                position = lf + 1
                lastEndedInBareLF = !crlf
                if skippingEmpty && line.isEmpty { continue }
                return line
            }
            return nil
        }
    }
}
