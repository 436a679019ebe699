import NIOCore
import Glibc
import SidecarCore

/// The first handler of a connection on a listener with several filter chains (or listener filters
/// that must see data first). It runs http_inspector on the first bytes, picks the filter chain as Envoy
/// does, installs that chain's handlers behind itself, replays what it read and steps aside.
final class FilterChainDispatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var listener: ChainedListenerRuntime
    private let worker: Worker
    private var buffered: ByteBuffer?
    private var timeout: Scheduled<Void>?
    private var decided = false
    private var connection = FilterChainSelector.Connection()
    /// The connection came through use_original_dst: its destination is the original one.
    private var handedOff = false

    init(listener: ChainedListenerRuntime, worker: Worker) {
        self.listener = listener
        self.worker = worker
    }

    func channelActive(context: ChannelHandlerContext) {
        worker.stats.inc(listener.stats.cxTotal)
        var config = listener.config
        connection.source = context.channel.remoteAddress
        connection.destination =
            (config.originalDestination || config.transparent || config.useOriginalDst)
            ? OriginalDestination.lookup(context.channel, listener: config) ?? context.channel.localAddress
            : context.channel.localAddress
        if config.useOriginalDst, let destination = connection.destination, let target = worker.current.config.handoffTarget(for: destination, from: listener.tag) {
            // Envoy's use_original_dst: the listener of the original destination takes the connection.
            listener = target
            config = target.config
            handedOff = true
            worker.stats.inc(target.stats.cxTotal)
        }
        guard config.httpInspector || config.tlsInspector else {
            decide(context: context)
            return
        }
        if let t = config.listenerFiltersTimeout?.timeAmount {
            timeout = context.eventLoop.assumeIsolated().scheduleTask(in: t) { [weak self] in
                guard let self, !self.decided else { return }
                if self.listener.config.continueOnListenerFiltersTimeout {
                    self.decide(context: context)
                } else {
                    context.close(promise: nil)
                }
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if decided {
            context.fireChannelRead(data)
            return
        }
        if buffered == nil { buffered = bytes } else { buffered!.writeBuffer(&bytes) }
        let view = buffered!.readableBytesView
        if listener.config.tlsInspector {
            switch TLSInspector.inspect(view) {
            case .needMore:
                return
            case .tls(let name, let alpn):
                connection.transportProtocol = "tls"
                connection.serverName = name
                connection.applicationProtocols = alpn
                decide(context: context)
                return
            case .notTLS:
                break
            }
        }
        guard listener.config.httpInspector else {
            decide(context: context)
            return
        }
        switch HTTPInspector.inspect(view) {
        case .needMore:
            return
        case .notHTTP:
            decide(context: context)
        case .protocolName(let p):
            connection.applicationProtocols = [p]
            decide(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        context.fireChannelInactive()
    }

    private func decide(context: ChannelHandlerContext) {
        decided = true
        timeout?.cancel()
        timeout = nil
        guard let index = listener.selector.select(connection) else {
            worker.stats.inc(listener.stats.noFilterChainMatch)
            // Envoy resets such a connection (RST, not FIN): the client sees it was refused.
            if let provider = context.channel as? SocketOptionProvider {
                _ = provider.setSoLinger(linger(l_onoff: 1, l_linger: 0))
            }
            context.close(promise: nil)
            return
        }
        do {
            let chain = listener.chains[index]
            let known = listener.config.originalDestination || listener.config.transparent || listener.config.useOriginalDst
                || handedOff
            if case .tcp = chain {
                _ = context.channel.setOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            }
            try ChainInstaller.install(chain, on: context.channel, worker: worker,
                                       originalDestination: known ? connection.destination : nil,
                                       serverName: connection.serverName)
        } catch {
            context.close(promise: nil)
            return
        }
        // The chain's handlers sit behind this one: tell them the connection is up, hand them what was
        // read, and leave.
        context.fireChannelActive()
        if let b = buffered {
            buffered = nil
            context.fireChannelRead(wrapInboundOut(b))
            context.fireChannelReadComplete()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}

@available(*, unavailable) extension FilterChainDispatcher: Sendable {}
