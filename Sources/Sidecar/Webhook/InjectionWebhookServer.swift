import Foundation
import Injection
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import SidecarCore
import SidecarUpstream
import Yams

/// `sidecar webhook`: the mutating admission webhook that injects pods, over HTTPS.
///
/// - `POST /inject`: an AdmissionReview (v1) for a Pod in, the AdmissionReview answer out (`AdmissionReviewHandler`).
///   A body that is not an AdmissionReview is answered 400 with what is wrong; over 4 MiB, 413.
/// - `GET /healthz`: 200 `ok`.
///
/// The serving certificate and key are files (a mounted Secret). They are read through an SDS file the server writes
/// into its secret directory, so the proxy's `SecretWatcher` sees them change (Kubernetes' `..data` swap included)
/// and new connections get the new certificate without a restart.
public final class InjectionWebhookServer: Sendable {
    public static let maxBody = 4 << 20

    private let handler: AdmissionReviewHandler
    private let provider: TLSContextProvider
    private let watcher: SecretWatcher
    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel

    /// Reads the certificate and key (an error names the file) and listens on `host`:`port`.
    public init(handler: AdmissionReviewHandler, certificate: String, key: String, host: String, port: Int,
                secretDirectory: String, threads: Int = 1) throws {
        self.handler = handler
        let sdsPath = (secretDirectory as NSString).appendingPathComponent("webhook-certificate.yaml")
        let sds = """
            resources:
            - "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret
              name: webhook
              tls_certificate: {certificate_chain: {filename: \(Self.quoted(certificate))}, private_key: {filename: \(Self.quoted(key))}}

            """
        do {
            try FileManager.default.createDirectory(atPath: secretDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            try Data(sds.utf8).write(to: URL(fileURLWithPath: sdsPath), options: .atomic)
        } catch {
            throw WebhookError("cannot write \(sdsPath): \(error)")
        }
        let transport = """
            name: envoy.transport_sockets.tls
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              common_tls_context:
                alpn_protocols: ["http/1.1"]
                tls_certificate_sds_secret_configs:
                - name: webhook
                  sds_config: {path_config_source: {path: \(Self.quoted(sdsPath))}}
            """
        guard let node = try Yams.compose(yaml: transport),
              let tls = try TLSContextConfig.decodeTransportSocket(ConfigValue(node: node, path: "webhook"), side: .downstream)
        else { throw WebhookError("cannot build the webhook's TLS settings") }
        provider = TLSContextProvider(config: tls, owner: "webhook")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        self.group = group
        watcher = SecretWatcher(providers: [provider], registry: StatsRegistry(), eventLoop: group.next())
        watcher.prime()
        do {
            try provider.load()
        } catch {
            try? group.syncShutdownGracefully()
            throw WebhookError("\(error)")
        }
        let provider = self.provider
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // The current certificate: a rotation applies to the next connection.
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: provider.snapshot.context))
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(WebhookHandler(handler: handler))
                    }
                }
                .bind(host: host, port: port)
                .wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw WebhookError("cannot listen on \(host):\(port): \(error)")
        }
        watcher.start()
        Log.info("webhook started", [("address", "\(host):\(localAddress?.port ?? port)"), ("certificate", certificate)])
    }

    public var localAddress: SocketAddress? { channel.localAddress }

    /// Blocks until the listener closes (`stop()`).
    public func wait() throws { try channel.closeFuture.wait() }

    public func stop() {
        watcher.stop()
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    private static func quoted(_ s: String) -> String { KubeValue.string(s).json }

    public struct WebhookError: Error, CustomStringConvertible {
        public var description: String
        init(_ d: String) { description = d }
    }
}

/// One HTTPS connection of the webhook: a request, its body (bounded), the answer.
private final class WebhookHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let handler: AdmissionReviewHandler
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var tooLarge = false

    init(handler: AdmissionReviewHandler) { self.handler = handler }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.clear()
            tooLarge = false
        case .body(var b):
            if body.readableBytes + b.readableBytes > InjectionWebhookServer.maxBody {
                tooLarge = true
            } else {
                body.writeBuffer(&b)
            }
        case .end:
            guard let head else { return }
            self.head = nil
            answer(context, head)
        }
    }

    private func answer(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        switch (head.method, path) {
        case (.GET, "/healthz"):
            respond(context, head, .ok, "ok\n", type: "text/plain")
        case (.POST, "/inject"):
            if tooLarge {
                respond(context, head, .payloadTooLarge, "the AdmissionReview is over \(InjectionWebhookServer.maxBody) bytes\n",
                        type: "text/plain")
                return
            }
            let text = body.readString(length: body.readableBytes) ?? ""
            do {
                let (response, decision, pod) = try handler.review(text)
                switch decision {
                case .injected(let n): Log.info("injected", [("pod", pod), ("patch_operations", "\(n)")])
                case .skipped(let why): Log.debug("not injected", [("pod", pod), ("reason", why)])
                case .refused(let why): Log.warning("pod refused", [("pod", pod), ("reason", why)])
                }
                respond(context, head, .ok, response, type: "application/json")
            } catch {
                Log.warning("bad AdmissionReview", [("reason", error.message)])
                respond(context, head, .badRequest, "bad AdmissionReview: \(error.message)\n", type: "text/plain")
            }
        case (_, "/inject"), (_, "/healthz"):
            respond(context, head, .methodNotAllowed, "method not allowed\n", type: "text/plain")
        default:
            respond(context, head, .notFound, "not found: POST /inject or GET /healthz\n", type: "text/plain")
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ status: HTTPResponseStatus,
                         _ text: String, type: String) {
        var headers = HTTPHeaders([("content-type", type), ("content-length", "\(text.utf8.count)")])
        if !request.isKeepAlive { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))),
                      promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: text)))), promise: nil)
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !request.isKeepAlive { done.whenComplete { _ in context.close(promise: nil) } }
    }
}
