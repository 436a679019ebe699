import NIOCore
import NIOHTTP1
import NIOHPACK
import NIOHTTP2
import NIOPosix
import NIOSSL

/// Runs one app probe against 127.0.0.1 on an event loop, as the kubelet would have: the future succeeds when the
/// probe passes and fails with the reason when it does not (refused, timed out, a status outside 200-399, a gRPC
/// service not SERVING).
enum AppProbeRunner {
    struct Failed: Error, CustomStringConvertible {
        var description: String
    }

    /// The kubelet does not check an HTTPS probe's certificate.
    static let insecureTLS: NIOSSLContext? = {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        return try? NIOSSLContext(configuration: tls)
    }()

    static func run(_ probe: AppProbe, on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        let done = eventLoop.makePromise(of: Void.self)
        let timer = eventLoop.scheduleTask(in: probe.timeout) {
            done.fail(Failed(description: "timed out after \(probe.timeout.nanoseconds / 1_000_000_000) s"))
        }
        done.futureResult.whenComplete { _ in timer.cancel() }
        let bootstrap = ClientBootstrap(group: eventLoop).connectTimeout(probe.timeout)
        let target = "127.0.0.1:\(probe.port)"
        switch probe.action {
        case .tcp:
            bootstrap.connect(host: "127.0.0.1", port: probe.port).whenComplete { result in
                switch result {
                case .success(let channel):
                    channel.close(promise: nil)
                    done.succeed(())
                case .failure(let error):
                    done.fail(Failed(description: "connect to \(target): \(error)"))
                }
            }
        case .http(let path, let https, let headers):
            bootstrap.channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    if https {
                        guard let tls = insecureTLS else { throw Failed(description: "no TLS context") }
                        try ops.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: nil))
                    }
                    try ops.addHTTPClientHandlers()
                    try ops.addHandler(HTTPProbeHandler(done: done))
                }
            }.connect(host: "127.0.0.1", port: probe.port).whenComplete { result in
                switch result {
                case .success(let channel):
                    var h = HTTPHeaders([("host", target), ("user-agent", "kube-probe/pilotfish"), ("accept", "*/*"),
                                         ("connection", "close")])
                    for (name, value) in headers { h.replaceOrAdd(name: name, value: value) }
                    let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: h)
                    channel.write(HTTPClientRequestPart.head(head), promise: nil)
                    channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
                    done.futureResult.whenComplete { _ in channel.close(promise: nil) }
                case .failure(let error):
                    done.fail(Failed(description: "connect to \(target): \(error)"))
                }
            }
        case .grpc(let service):
            bootstrap.channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let multiplexer = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .client, connectionConfiguration: .init(), streamConfiguration: .init()
                    ) { stream in stream.close() }
                    let stream = channel.eventLoop.makePromise(of: Channel.self)
                    multiplexer.createStreamChannel(promise: stream) { s in
                        s.eventLoop.makeCompletedFuture {
                            try s.pipeline.syncOperations.addHandler(GRPCHealthProbeHandler(
                                service: service, authority: target, done: done))
                        }
                    }
                    stream.futureResult.whenFailure { done.fail(Failed(description: "gRPC stream: \($0)")) }
                }
            }.connect(host: "127.0.0.1", port: probe.port).whenComplete { result in
                switch result {
                case .success(let channel): done.futureResult.whenComplete { _ in channel.close(promise: nil) }
                case .failure(let error): done.fail(Failed(description: "connect to \(target): \(error)"))
                }
            }
        }
        return done.futureResult
    }
}

/// The response's status decides: 200-399 passes.
private final class HTTPProbeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    let done: EventLoopPromise<Void>
    init(done: EventLoopPromise<Void>) { self.done = done }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        if (200..<400).contains(Int(head.status.code)) {
            done.succeed(())
        } else {
            done.fail(AppProbeRunner.Failed(description: "HTTP probe answered \(head.status.code)"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.fail(AppProbeRunner.Failed(description: "the app closed the connection without an answer"))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        done.fail(AppProbeRunner.Failed(description: "HTTP probe: \(error)"))
        context.close(promise: nil)
    }
}

/// `grpc.health.v1.Health/Check` on one stream: the request message names the service; the answer passes when its
/// `status` is SERVING (1) and the call ends with grpc-status 0.
private final class GRPCHealthProbeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload
    let service: String
    let authority: String
    let done: EventLoopPromise<Void>
    private var message: [UInt8] = []
    private var grpcStatus: String?

    init(service: String, authority: String, done: EventLoopPromise<Void>) {
        self.service = service
        self.authority = authority
        self.done = done
    }

    func channelActive(context: ChannelHandlerContext) {
        let headers = HPACKHeaders([
            (":method", "POST"), (":scheme", "http"), (":path", "/grpc.health.v1.Health/Check"),
            (":authority", authority), ("content-type", "application/grpc"), ("te", "trailers"),
            ("user-agent", "kube-probe/pilotfish"),
        ])
        context.write(wrapOutboundOut(.headers(.init(headers: headers))), promise: nil)
        // HealthCheckRequest { string service = 1; } behind gRPC's 5-byte prefix.
        let name = Array(service.utf8)
        var body: [UInt8] = name.isEmpty ? [] : [0x0a] + Self.varint(name.count) + name
        body = [0] + withUnsafeBytes(of: UInt32(body.count).bigEndian, Array.init) + body
        let buffer = context.channel.allocator.buffer(bytes: body)
        context.writeAndFlush(wrapOutboundOut(.data(.init(data: .byteBuffer(buffer), endStream: true))), promise: nil)
        context.fireChannelActive()
    }

    static func varint(_ n: Int) -> [UInt8] {
        var n = UInt64(n), out: [UInt8] = []
        repeat {
            var b = UInt8(n & 0x7f)
            n >>= 7
            if n != 0 { b |= 0x80 }
            out.append(b)
        } while n != 0
        return out
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let h):
            if let s = h.headers.first(name: "grpc-status") { grpcStatus = s }
            if let s = h.headers.first(name: ":status"), s != "200" {
                finish(AppProbeRunner.Failed(description: "gRPC probe answered HTTP \(s)"))
            } else if h.endStream {
                finish(nil)
            }
        case .data(let d):
            if case .byteBuffer(var b) = d.data { message += b.readBytes(length: b.readableBytes) ?? [] }
            if d.endStream { finish(nil) }
        case .rstStream(let code):
            finish(AppProbeRunner.Failed(description: "gRPC probe: stream reset \(code)"))
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(AppProbeRunner.Failed(description: "gRPC probe: the stream closed without an answer"))
    }

    private func finish(_ error: Error?) {
        if let error { return done.fail(error) }
        guard grpcStatus == "0" else {
            return done.fail(AppProbeRunner.Failed(description: "gRPC probe: grpc-status \(grpcStatus ?? "missing")"))
        }
        // HealthCheckResponse { ServingStatus status = 1; }: 08 01 is SERVING.
        let payload = message.count > 5 ? Array(message[5...]) : []
        if payload == [0x08, 0x01] {
            done.succeed(())
        } else {
            done.fail(AppProbeRunner.Failed(description: "gRPC probe: the service is not SERVING"))
        }
    }
}
