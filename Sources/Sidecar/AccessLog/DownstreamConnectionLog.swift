import Atomics
import Foundation
import NIOCore
import SidecarCore

/// What the access logs of a whole downstream connection read (the listener's `access_log`, and tcp_proxy's):
/// Envoy's connection-level `StreamInfo`. One per connection, made only when one of those logs is configured;
/// the tcp_proxy session fills in its upstream side.
final class DownstreamConnectionLog {
    private static let nextID = ManagedAtomic<UInt64>(1)

    /// `%CONNECTION_ID%`: unique in the process. Envoy numbers upstream connections from the same counter;
    /// Pilotfish numbers downstream connections only, so the numbers differ from Envoy's but stay unique.
    static func nextConnectionID() -> UInt64 {
        nextID.loadThenWrappingIncrement(ordering: .relaxed)
    }

    let id: UInt64
    let start = StreamStartTime.now()
    let remote: StreamAddress?
    let local: StreamAddress?
    /// `%HOSTNAME%`, looked up once.
    static let hostname = ProcessInfo.processInfo.hostName
    var bytesReceived: UInt64 = 0
    var bytesSent: UInt64 = 0
    /// The HTTP version of the connection's first request (Envoy's codec sets it on the connection).
    var protocolName: String?
    var upstreamHost: StreamAddress?
    var upstreamCluster: String?
    var upstreamLocalAddress: StreamAddress?
    var upstreamTransportFailureReason: String?
    var responseFlags: ResponseFlags = []
    var requestedServerName: String?
    var peerURISAN: String?
    /// Logged already: a connection is logged once.
    var logged = false

    init(id: UInt64, channel: Channel, originalDestination: SocketAddress?) {
        self.id = id
        remote = channel.remoteAddress.flatMap { StreamAddress($0) }
        local = (originalDestination ?? channel.localAddress).flatMap { StreamAddress($0) }
    }

    /// The connection as format commands see it: no request or response headers, response code 0.
    func formatContext(end: NIODeadline) -> FormatContext {
        var info = StreamInfo()
        info.startTime = start
        info.end = end
        info.bytesReceived = bytesReceived
        info.bytesSent = bytesSent
        info.protocolName = protocolName
        info.upstreamHost = upstreamHost
        info.upstreamCluster = upstreamCluster
        info.upstreamLocalAddress = upstreamLocalAddress
        info.upstreamTransportFailureReason = upstreamTransportFailureReason
        info.responseFlags = responseFlags
        info.downstreamRemoteAddress = remote
        info.downstreamDirectRemoteAddress = remote
        info.downstreamLocalAddress = local
        info.requestedServerName = requestedServerName
        info.downstreamPeerURISAN = peerURISAN
        info.connectionID = id
        info.hostname = Self.hostname
        return FormatContext(stream: info)
    }
}

/// Counts an HTTP connection's bytes as they leave and arrive in the clear (behind TLS when there is TLS) and
/// writes the listener's access log when the connection closes. tcp_proxy connections log from their session.
final class ListenerAccessLogHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    private let log: DownstreamConnectionLog
    private let logs: [AccessLogConfig]
    private let worker: Worker

    init(log: DownstreamConnectionLog, logs: [AccessLogConfig], worker: Worker) {
        self.log = log
        self.logs = logs
        self.worker = worker
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        log.bytesReceived &+= UInt64(unwrapInboundIn(data).readableBytes)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .byteBuffer(let b) = unwrapOutboundIn(data) { log.bytesSent &+= UInt64(b.readableBytes) }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !log.logged {
            log.logged = true
            worker.logAccess(logs, log.formatContext(end: .now()))
        }
        context.fireChannelInactive()
    }
}

@available(*, unavailable) extension ListenerAccessLogHandler: Sendable {}
@available(*, unavailable) extension DownstreamConnectionLog: Sendable {}
