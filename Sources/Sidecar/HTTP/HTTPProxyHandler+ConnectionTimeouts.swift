import NIOCore
import NIOHTTP1
import SidecarCore

/// The connection manager's timeouts that are not about one stream's activity: `request_timeout` (the whole
/// request must arrive in time) and the downstream connection's `common_http_protocol_options.idle_timeout` and
/// `max_connection_duration`.
extension HTTPProxyHandler {
    /// Envoy's `request_timeout`: 408 `request timeout` when the request has not fully arrived in time, counted in
    /// `downstream_rq_timeout`; the connection closes (its request is unfinished).
    func startRequestTimer(_ timeout: ProtoDuration) {
        requestTimer?.cancel()
        requestTimer = context.eventLoop.scheduleTask(in: timeout.timeAmount) { [self] in
            requestTimer = nil
            guard requestActive, !requestComplete, !responseStarted else { return }
            stats.inc(listener.stats.rqTimeout)
            lifecycle.disableKeepAlive()
            if stream.active {
                stream.sendLocalReply(status: .requestTimeout, body: "request timeout", closeConnection: true)
            } else {
                phase = .discarding
                writeCodecReply(status: .requestTimeout, body: "request timeout", close: true)
            }
        }
    }

    /// Envoy's `request_headers_timeout` against slow clients (slowloris): bytes arriving while the connection is
    /// between requests are the next request's headers (`RequestHeaderBytesWatch` sees them before the decoder); if
    /// its head does not follow within the timeout, 408 `request header timeout` (`downstream_rq_header_timeout`)
    /// and the connection closes, as Envoy 1.40 answers. A connection that sends nothing is the idle timeout's.
    func requestBytesArrived() {
        guard headersTimer == nil, let timeout = listener.hcm.requestHeadersTimeout, context != nil else { return }
        guard case .idle = phase, !requestActive, context.channel.isActive else { return }
        let heads = headsReceived
        headersTimer = context.eventLoop.scheduleTask(in: timeout.timeAmount) { [self] in
            headersTimer = nil
            guard context != nil, context.channel.isActive, headsReceived == heads, case .idle = phase, !requestActive
            else { return }
            stats.inc(listener.stats.rqHeaderTimeout)
            responseCodeDetails = "request_header_timeout"
            phase = .discarding
            writeCodecReply(status: .requestTimeout, body: "request header timeout", close: true)
        }
    }

    /// A connection with no request in flight for `idle_timeout` is closed (`downstream_cx_idle_timeout`), as is
    /// an idle connection older than `max_connection_duration` (`downstream_cx_max_duration_reached`). One timer per
    /// connection ticks at a quarter of the timeout and counts quiet ticks, so the connection closes between 1 and
    /// 1.25 times the timeout after its last request: no timer is armed per request.
    func armConnectionIdleTimer() {
        let common = listener.hcm.commonProtocolOptions
        let period = [common.idleTimeout, common.maxConnectionDuration].compactMap { $0?.nanoseconds }.min()
        guard let period else { return }
        let tick = TimeAmount.nanoseconds(max(period / 4, 1_000_000))
        connectionIdleTimer = context.eventLoop.scheduleTask(in: tick) { [self] in
            connectionIdleTimer = nil
            connectionIdleTicked(tick)
        }
    }

    private func connectionIdleTicked(_ tick: TimeAmount) {
        guard context != nil, context.channel.isActive else { return }
        let common = listener.hcm.commonProtocolOptions
        let idle: Bool
        if case .idle = phase { idle = !requestActive } else { idle = false }
        if idle && requestsOnConnection == connectionIdleSeen {
            connectionIdleQuietTicks += 1
        } else {
            connectionIdleSeen = requestsOnConnection
            connectionIdleQuietTicks = 0
        }
        if idle, let limit = common.maxConnectionDuration, NIODeadline.now() - connectedAt >= limit.timeAmount {
            stats.inc(listener.stats.cxMaxDurationReached)
            context.close(promise: nil)
            return
        }
        if idle, let timeout = common.idleTimeout,
           Int64(connectionIdleQuietTicks) * tick.nanoseconds >= timeout.nanoseconds {
            stats.inc(listener.stats.cxIdleTimeout)
            context.close(promise: nil)
            return
        }
        armConnectionIdleTimer()
    }
}
