import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
import NIOCore
import SwiftProtobuf

/// OTLP/HTTP: the protobuf request POSTed to `http_service`'s path on the collector cluster.
final class OTLPHTTPTransport: SpanTransport {
    private let client: CollectorHTTPClient
    private let loop: EventLoop
    private let resource: OTLPEncoding.Resource
    private let timeout: TimeAmount

    init(loop: EventLoop, resource: OTLPEncoding.Resource, path: String, authority: String, timeout: TimeAmount,
         headers: [(String, String)], resolve: @escaping @Sendable () -> NIOCore.SocketAddress?) {
        client = CollectorHTTPClient(loop: loop, path: path, host: authority, headers: headers,
                                     contentType: "application/x-protobuf", resolve: resolve)
        self.loop = loop
        self.resource = resource
        self.timeout = timeout
    }

    func send(_ spans: [Span]) -> EventLoopFuture<Void> {
        let request = OTLPEncoding.request(spans, resource: resource)
        let body: ByteBuffer
        do {
            body = ByteBuffer(bytes: try request.serializedBytes() as [UInt8])
        } catch {
            return loop.makeFailedFuture(error)
        }
        return client.post(body: body, timeout: timeout)
            .flatMapThrowing { status in
                guard (200..<300).contains(status) else { throw CollectorError.status(status) }
            }
    }

    func close() { client.reset() }
}

/// OTLP/gRPC: unary `opentelemetry.proto.collector.trace.v1.TraceService/Export` on an HTTP/2 connection to the
/// collector cluster's host, with the `grpc_service` timeout as the call's deadline. The client is made for the
/// host the cluster names and made again when that host changes.
final class OTLPGRPCTransport: SpanTransport {
    private static let export = MethodDescriptor(
        fullyQualifiedService: "opentelemetry.proto.collector.trace.v1.TraceService", method: "Export")

    private let loop: EventLoop
    private let resource: OTLPEncoding.Resource
    private let authority: String?
    private let timeout: TimeAmount
    private let resolve: @Sendable () -> NIOCore.SocketAddress?
    private var client: GRPCClient<HTTP2ClientTransport.Posix>?
    private var clientAddress: NIOCore.SocketAddress?

    init(loop: EventLoop, resource: OTLPEncoding.Resource, authority: String?, timeout: TimeAmount,
         resolve: @escaping @Sendable () -> NIOCore.SocketAddress?) {
        self.loop = loop
        self.resource = resource
        self.authority = authority
        self.timeout = timeout
        self.resolve = resolve
    }

    deinit { client?.beginGracefulShutdown() }

    func close() {
        client?.beginGracefulShutdown()
        client = nil
        clientAddress = nil
    }

    func send(_ spans: [Span]) -> EventLoopFuture<Void> {
        guard let address = resolve() else { return loop.makeFailedFuture(CollectorError.noHost) }
        let client: GRPCClient<HTTP2ClientTransport.Posix>
        do {
            client = try self.client(for: address)
        } catch {
            return loop.makeFailedFuture(error)
        }
        let request = OTLPEncoding.request(spans, resource: resource)
        var options = CallOptions.defaults
        options.timeout = .nanoseconds(timeout.nanoseconds)
        let promise = loop.makePromise(of: Void.self)
        promise.completeWithTask {
            try await client.unary(
                request: ClientRequest(message: request), descriptor: Self.export,
                serializer: ProtobufSerializer<OTLPEncoding.Request>(),
                deserializer: ProtobufDeserializer<OTLPEncoding.Response>(), options: options
            ) { response in _ = try response.message }
        }
        return promise.futureResult
    }

    private func client(for address: NIOCore.SocketAddress) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
        if let client, clientAddress == address { return client }
        client?.beginGracefulShutdown()
        guard let ip = address.ipAddress, let port = address.port else { throw CollectorError.noHost }
        var config = HTTP2ClientTransport.Posix.Config.defaults
        config.http2.authority = authority
        let transport: HTTP2ClientTransport.Posix
        if address.protocol == .inet6 {
            let target: ResolvableTargets.IPv6 = .ipv6(address: ip, port: port)
            transport = try HTTP2ClientTransport.Posix(
                target: target, transportSecurity: .plaintext, config: config, eventLoopGroup: loop)
        } else {
            let target: ResolvableTargets.IPv4 = .ipv4(address: ip, port: port)
            transport = try HTTP2ClientTransport.Posix(
                target: target, transportSecurity: .plaintext, config: config, eventLoopGroup: loop)
        }
        let made = GRPCClient(transport: transport)
        Task { try? await made.runConnections() }
        client = made
        clientAddress = address
        return made
    }
}
