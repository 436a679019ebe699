import NIOCore
import NIOHTTP1
import SidecarCore

/// `envoy.filters.http.grpc_web` (Envoy's grpc_web_filter.cc): a browser's gRPC-Web call becomes a gRPC call
/// upstream, and the gRPC response a gRPC-Web one.
///
/// A request whose `content-type` is `application/grpc-web`, `application/grpc-web+proto`,
/// `application/grpc-web-text` or `application/grpc-web-text+proto` goes upstream as `application/grpc` with
/// `te: trailers` and `grpc-accept-encoding: identity,deflate,gzip` (unless it has one), without its
/// `content-length`; a text request's body is base64-decoded (in 4-character groups as it arrives; bad base64 is a
/// local 400 `Bad gRPC-web request, invalid base64 data.`). The response gets `content-type:
/// application/grpc-web+proto` (`application/grpc-web-text+proto` when the client's `accept` asks for text) and no
/// `content-length`; its trailers become the body's last frame (flag 0x80, `name:value\\r\\n` lines), and for text
/// each gRPC frame is base64-encoded on its own. A response that is not gRPC (not 200 with a gRPC content-type, nor
/// trailers-only with one) is turned into a gRPC-Web error: its body (up to 16 KiB) becomes `grpc-message`, its
/// status `grpc-status` (Envoy's HTTP-to-gRPC mapping), with an empty body.
///
/// Not kept: Envoy's per-method gRPC-Web stats (Pilotfish's stat names are fixed at start-up).
final class GRPCWebFilter: HTTPStreamFilter {
    static let typeURL = "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"
    static let registration = HTTPFilterRegistration(
        typeURL: typeURL, name: "envoy.filters.http.grpc_web",
        decode: { try GRPCWebConfig.decode($0) },
        fields: [.init("envoy.extensions.filters.http.grpc_web.v3.GrpcWeb", type: typeURL, "")])

    static let contentTypes: Set<String> = [
        "application/grpc-web", "application/grpc-web+proto", "application/grpc-web-text",
        "application/grpc-web-text+proto",
    ]
    static let trailerFlag: UInt8 = 0x80
    /// The most of a non-gRPC response body that becomes `grpc-message`.
    static let maxMessageBody = 16384

    private var isGRPCWeb = false
    private var textRequest = false
    private var textResponse = false
    /// The response is not gRPC: it becomes an error with its body as the message.
    private var transformsNonGRPC = false
    /// Base64 characters of the request short of a 4-character group.
    private var pendingText = ByteBuffer()
    /// Response bytes short of a whole gRPC frame (text responses encode frame by frame).
    private var pendingFrame = ByteBuffer()

    // MARK: Request

    func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        guard let contentType = head.headers.first(name: "content-type"), Self.contentTypes.contains(contentType) else {
            return .continue
        }
        isGRPCWeb = true
        head.headers.remove(name: "content-length")
        textRequest = contentType.hasPrefix("application/grpc-web-text")
        head.headers.setKeepingPosition(name: "content-type", value: "application/grpc")
        if let accept = head.headers.first(name: "accept"),
           accept == "application/grpc-web-text" || accept == "application/grpc-web-text+proto" {
            textResponse = true
        }
        head.headers.replaceOrAdd(name: "te", value: "trailers")
        if !head.headers.contains(name: "grpc-accept-encoding") {
            head.headers.add(name: "grpc-accept-encoding", value: "identity,deflate,gzip")
        }
        return .continue
    }

    func decodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus {
        guard isGRPCWeb, textRequest else { return .continue }
        let available = data.readableBytes + pendingText.readableBytes
        if endStream {
            if available == 0 { return .continue }
            if available % 4 != 0 {
                // Envoy ends the connection too (what decoded before went upstream; its stream is reset).
                stream.sendLocalReply(status: .badRequest, body: "Bad gRPC-web request, invalid base64 data.",
                                      closeConnection: true, details: "grpc_base_64_decode_failed_bad_size")
                return .stopIterationNoBuffer
            }
        } else if available < 4 {
            pendingText.writeBuffer(&data)
            return .stopIterationNoBuffer
        }
        let whole = available / 4 * 4 - pendingText.readableBytes
        var text = pendingText
        pendingText.clear()
        if var slice = data.readSlice(length: whole) { text.writeBuffer(&slice) }
        var decoded = ByteBufferAllocator().buffer(capacity: text.readableBytes / 4 * 3)
        guard Base64.decode(text.readableBytesView, into: &decoded), decoded.readableBytes > 0 else {
            stream.sendLocalReply(status: .badRequest, body: "Bad gRPC-web request, invalid base64 data.",
                                  closeConnection: true, details: "grpc_base_64_decode_failed")
            return .stopIterationNoBuffer
        }
        pendingText.writeBuffer(&data)
        data = decoded
        return .continue
    }

    // MARK: Response

    func encodeHeaders(_ head: inout HTTPResponseHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        guard isGRPCWeb else { return .continue }
        transformsNonGRPC = !Self.isGRPCResponse(head, endStream: endStream) && !Self.isProtoGRPCWebResponse(head)
        head.headers.remove(name: "content-length")
        // Where the upstream's content-type was, as Envoy's header map replaces a value.
        head.headers.setKeepingPosition(
            name: "content-type", value: textResponse ? "application/grpc-web-text+proto" : "application/grpc-web+proto")
        if endStream || !transformsNonGRPC { return .continue }
        return .stopIteration
    }

    func encodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus {
        guard isGRPCWeb else { return .continue }
        if transformsNonGRPC {
            if !endStream {
                return stream.heldResponseBodyLength >= Self.maxMessageBody ? .stopIterationNoBuffer : .stopIterationAndBuffer
            }
            transformsNonGRPC = false
            var body = stream.takeHeldResponseBody() ?? ByteBuffer()
            body.writeBuffer(&data)
            setNonGRPCError(body: body, stream: stream)
            data = ByteBuffer()
            return .continue
        }
        guard textResponse else { return .continue }
        // Whole frames, each base64-encoded on its own (flag, length, message).
        pendingFrame.writeBuffer(&data)
        var out = ByteBufferAllocator().buffer(capacity: pendingFrame.readableBytes * 4 / 3 + 8)
        while pendingFrame.readableBytes >= 5,
              let length = pendingFrame.getInteger(at: pendingFrame.readerIndex + 1, as: UInt32.self),
              pendingFrame.readableBytes >= 5 + Int(length),
              let frame = pendingFrame.readSlice(length: 5 + Int(length)) {
            Base64.encode(frame.readableBytesView, into: &out)
        }
        pendingFrame.discardReadBytes()
        if out.readableBytes == 0 && !endStream { return .stopIterationNoBuffer }
        data = out
        return .continue
    }

    func encodeTrailers(_ trailers: inout HTTPHeaders, stream: HTTPFilterStream) -> FilterTrailersStatus {
        guard isGRPCWeb else { return .continue }
        if transformsNonGRPC {
            transformsNonGRPC = false
            setNonGRPCError(body: stream.takeHeldResponseBody() ?? ByteBuffer(), stream: stream)
            return .continue
        }
        var lines = ByteBufferAllocator().buffer(capacity: 64)
        for (name, value) in trailers {
            lines.writeString(name)
            lines.writeString(":")
            lines.writeString(value)
            lines.writeString("\r\n")
        }
        trailers = HTTPHeaders()
        var frame = ByteBufferAllocator().buffer(capacity: 5 + lines.readableBytes)
        frame.writeInteger(Self.trailerFlag)
        frame.writeInteger(UInt32(lines.readableBytes))
        frame.writeBuffer(&lines)
        if textResponse {
            var encoded = ByteBufferAllocator().buffer(capacity: frame.readableBytes * 4 / 3 + 4)
            Base64.encode(frame.readableBytesView, into: &encoded)
            stream.addEncodedData(encoded)
        } else {
            stream.addEncodedData(frame)
        }
        return .continue
    }

    /// A response that is not gRPC: status and body become `grpc-status` and `grpc-message`; no body goes.
    private func setNonGRPCError(body: ByteBuffer, stream: HTTPFilterStream) {
        let message = Self.percentEncode(body.readableBytesView.prefix(Self.maxMessageBody))
        stream.modifyHeldResponseHead { head in
            head.headers.replaceOrAdd(name: "grpc-message", value: message)
            head.headers.replaceOrAdd(name: "grpc-status", value: String(GRPCStatus.fromHTTP(Int(head.status.code))))
            head.headers.replaceOrAdd(name: "content-length", value: "0")
        }
    }

    /// Envoy's `Grpc::Common::isGrpcResponseHeaders`: trailers-only with a gRPC content-type, or 200 with one.
    static func isGRPCResponse(_ head: HTTPResponseHead, endStream: Bool) -> Bool {
        guard let ct = head.headers.first(name: "content-type") else { return false }
        let grpc = ct == "application/grpc" || ct.hasPrefix("application/grpc+") || ct.hasPrefix("application/grpc;")
        if endStream { return grpc }
        return head.status == .ok && grpc
    }

    /// A 200 that is already gRPC-Web (proto): `application/grpc-web` or `+proto`, parameters aside.
    static func isProtoGRPCWebResponse(_ head: HTTPResponseHead) -> Bool {
        guard head.status == .ok, let ct = head.headers.first(name: "content-type") else { return false }
        let media = ct.split(separator: ";", maxSplits: 1).first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        return media == "application/grpc-web+proto" || media == "application/grpc-web"
    }

    /// Envoy's `PercentEncoding::encode`: bytes outside printable ASCII, and '%', as %XX.
    static func percentEncode<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        var out = ""
        for b in bytes {
            if b < 0x20 || b > 0x7E || b == 0x25 {
                out += "%" + (b < 16 ? "0" : "") + String(b, radix: 16, uppercase: true)
            } else {
                out.unicodeScalars.append(UnicodeScalar(b))
            }
        }
        return out
    }
}

/// The filter's config (`GrpcWeb` has no fields).
struct GRPCWebConfig: HTTPFilterConfig {
    static func decode(_ obj: ConfigObject) throws -> GRPCWebConfig {
        try obj.finish()
        return GRPCWebConfig()
    }

    func makeFactory(_ context: HTTPFilterBuildContext) -> any HTTPFilterFactory { GRPCWebFactory(name: context.filterName) }
}

struct GRPCWebFactory: HTTPFilterFactory {
    let name: String
    /// Per request: its mode and partial frames.
    func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter { GRPCWebFilter() }
}
