import NIOCore
import NIOHTTP1

/// The upstream half of a forwarded request: choosing a host, getting a connection within the circuit
/// breakers, attempts and their timeouts, retries with back-off, and feeding outlier detection.
///
/// Envoy's rules kept here: the route timeout starts when the downstream request is complete and covers every
/// attempt (a global timeout is never retried); the per-try timeout starts when an attempt has both its
/// connection and the whole request; once any byte of a response went downstream there is no retry; a 503
/// answered because of circuit-breaker overflow carries `x-envoy-overloaded: true` and is not retried.
extension HTTPProxyHandler {
    func forward(_ head: HTTPRequestHead, target: ForwardTarget, request: RouteRequest) {
        // The route resolved its cluster when the snapshot was built; only cluster_header names one per request.
        let snapshot = stream.snapshot
        guard let slot = target.clusterSlot ?? snapshot.config.slot(named: target.cluster) else {
            // A cluster that does not exist (cluster_header): Envoy's cluster_not_found_response_code.
            stream.sendLocalReply(status: .serviceUnavailable, body: "", closeConnection: false)
            return
        }
        let local = snapshot[slot]
        let entry = local.info
        cluster = entry
        responseMutations = target.mutations
        routeTimeout = target.timeout
        if let idle = target.idleTimeout { setStreamIdleTimeout(idle) }

        var headers = head.headers
        let expectContinue = headers.first(name: "expect")?.lowercased() == "100-continue"
        if expectContinue { headers.remove(name: "expect") }
        HopByHop.strip(&headers)
        // Request headers are never honoured (see RetryHeaders), so only a route policy makes retries.
        let retry = target.retryPolicy.flatMap {
            RetryState(route: $0, requestHeaders: headers, honorRequestHeaders: false)
        }
        // Envoy's FilterUtility::finalTimeout: the per-try timeout applies with or without a retry state.
        let perTryTimeout = RetryState.perTryTimeout(
            route: target.retryPolicy, requestHeaders: headers, honorRequestHeaders: false,
            globalTimeout: target.timeout)
        RetryHeaders.strip(&headers)
        // forward_client_cert_details defaults to SANITIZE: a client never gets to assert a certificate.
        headers.remove(name: "x-forwarded-client-cert")
        if !headers.contains(name: "x-forwarded-proto") {
            headers.add(name: "x-forwarded-proto", value: security != nil ? "https" : "http")
        }
        if target.timeout.isZero {
            headers.remove(name: "x-envoy-expected-rq-timeout-ms")
        } else {
            let expected = perTryTimeout ?? target.timeout
            headers.replaceOrAdd(name: "x-envoy-expected-rq-timeout-ms", value: String(expected.milliseconds))
        }
        // Envoy's finalizeRequestHeaders: the header mutations see the request's own host; the rewrite follows.
        for m in target.mutations where !m.isEmpty { m.applyRequest(to: &headers, context: formatContext()) }
        if let literal = target.hostRewrite {
            headers.replaceOrAdd(name: "host", value: literal)
        }
        if head.version.minor == 0 && !headers.contains(name: "host") {
            headers.add(name: "host", value: request.authority)
        }
        if expectContinue {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))),
                                  promise: nil)
        }
        var hash: UInt64?
        if entry.config.lbPolicy == .RING_HASH || entry.config.lbPolicy == .MAGLEV {
            hash = RequestHash.compute(target.hashPolicies, headers: head.headers, path: head.uri,
                                       source: context.channel.remoteAddress)
        }
        let source = UpstreamSource.choose(
            listener: listener.config, downstream: context.channel, clusterSource: local.pool.clusterSource)
        let limit = target.perRequestBufferLimitBytes ?? listener.config.perConnectionBufferLimitBytes
        upstream = UpstreamRequest(
            local: local, target: target,
            head: HTTPRequestHead(version: .http1_1, method: head.method, uri: target.path(for: head.uri), headers: headers),
            hash: hash, source: source, retry: retry, bufferLimit: limit)
        upstream?.perTryTimeout = perTryTimeout
        upstreamStart = .now()
        if !target.mirrorPolicies.isEmpty {
            startShadows(target, snapshot: snapshot, headers: headers, method: head.method, uri: head.uri, limit: limit)
        }
        startAttempt()
    }

    // MARK: Shadowing (request_mirror_policies)

    /// A copy of the request for each mirror policy that selects it, with `-shadow` added to its host.
    private func startShadows(_ target: ForwardTarget, snapshot: WorkerSnapshot, headers: HTTPHeaders,
                              method: HTTPMethod, uri: String, limit: Int) {
        let runtime = worker.server.runtime
        for policy in target.mirrorPolicies where policy.fraction.evaluate(runtime, random: worker.random.next()) {
            guard let slot = policy.slot else { continue }
            let mirrored = snapshot[slot]
            var shadowHeaders = headers
            if !policy.keepHost, let host = shadowHeaders.first(name: "host") {
                shadowHeaders.replaceOrAdd(name: "host", value: MirrorPolicy.shadowHost(host))
            }
            // Envoy sends the copy through its async client, which marks it internal and appends its own address
            // to x-forwarded-for (observed on Envoy 1.40).
            shadowHeaders.replaceOrAdd(name: "x-envoy-internal", value: "true")
            let xff = shadowHeaders.first(name: "x-forwarded-for").map { $0 + "," } ?? ""
            shadowHeaders.replaceOrAdd(name: "x-forwarded-for", value: xff + SidecarServer.localAddress)
            let source = UpstreamSource.choose(
                listener: listener.config, downstream: context.channel, clusterSource: mirrored.pool.clusterSource)
            if let shadow = ShadowRequest(
                worker: worker, cluster: mirrored,
                head: HTTPRequestHead(version: .http1_1, method: method, uri: target.path(for: uri), headers: shadowHeaders),
                source: source, priority: target.priority, bufferLimit: limit, random: &worker.random)
            {
                shadows.append(shadow)
            }
        }
    }

    /// The mirrored copies get every part of the request the router gets.
    func mirror(_ part: HTTPClientRequestPart, bytes: Int) {
        for s in shadows { s.send(part, bytes: bytes) }
    }

    /// The request is over for the router: copies still waiting for its body are abandoned, complete ones finish
    /// on their own.
    func releaseShadows() {
        for s in shadows { s.abandonIfIncomplete() }
        shadows.removeAll()
    }

    // MARK: Attempts

    /// Picks a host and gets a connection for the next attempt.
    private func startAttempt() {
        guard let up = upstream else { return }
        let entry = up.info
        up.attempt += 1
        attemptCount = up.attempt
        up.attemptID += 1
        up.sent = 0
        let local = up.local
        if entry.config.type == .ORIGINAL_DST {
            // CLUSTER_PROVIDED: the host is where this connection was going before capture.
            up.host = originalDestination.map { UpstreamHost(address: $0, hostname: $0.ipAddress ?? "", weight: 1) }
            up.hostIndex = nil
        } else {
            let avoid = up.retry?.policy.avoidPreviousHosts ?? false
            let tried = up.tried
            let maxAttempts = avoid ? max(1, up.retry?.policy.hostSelectionRetryMaxAttempts ?? 1) : 1
            up.hostIndex = local.choose(hash: up.hash, random: &worker.random, maxAttempts: maxAttempts,
                                        reject: { avoid && tried.contains($0) })
            up.host = up.hostIndex.map { local.hosts[$0] }
        }
        upstreamHostAddress = up.host?.address
        guard let host = up.host else {
            upstream = up
            stats.inc(entry.stats.cxNoneHealthy)
            responseFlags.insert(.noHealthyUpstream)
            finishWithLocalReply(status: .serviceUnavailable, body: "no healthy upstream")
            return
        }
        if let i = up.hostIndex, up.retry?.policy.avoidPreviousHosts ?? false { up.tried.append(i) }
        if up.target.autoHostRewrite, entry.config.type.resolvesNames {
            up.head.headers.replaceOrAdd(name: "host", value: host.hostname)
        }
        upstream = up
        switch local.pool.acquire(host, source: up.source, priority: up.priority) {
        case .ready(let conn):
            attach(conn)
        case .overflow:
            overflowed()
        case .pending(let future, let waiter):
            upstream?.waiter = waiter
            phase = .connecting
            let id = up.attemptID
            future.whenComplete { [self] result in
                // The same request (not a later one on this connection) and the same attempt.
                guard let current = upstream, current === up, current.attemptID == id, case .connecting = phase else {
                    // The attempt was abandoned (client gone, timeout) while it waited.
                    if case .success(let conn) = result { conn.pool.release(conn) }
                    return
                }
                upstream?.waiter = nil
                switch result {
                case .success(let conn):
                    attach(conn)
                case .failure(let error):
                    if let i = current.hostIndex { current.local.record(i, .connectFailed, random: &worker.random) }
                    attemptFailed(.connectFailure, reason: Self.connectFailureReason(error))
                }
            }
        }
    }

    /// The attempt has its connection: send the head and everything of the body received so far.
    private func attach(_ conn: UpstreamConnection) {
        guard let up = upstream else { return }
        guard up.info.resources.tryAcquire(.requests, up.priority) else {
            // max_requests: Envoy 1.38+ fails the stream with an overflow counted in upstream_rq_active_overflow.
            conn.pool.release(conn)
            stats.inc(up.info.stats.rqActiveOverflow)
            overflowed()
            return
        }
        up.attached = true
        stats.inc(up.info.stats.rqTotal)
        stats.inc(up.info.stats.rqActive)
        if let i = up.hostIndex { up.local.requestStarted(i) }
        conn.stream = self
        phase = .forwarding(conn)
        var head = up.head
        if up.target.includeRequestAttemptCount {
            head.headers.replaceOrAdd(name: "x-envoy-attempt-count", value: String(up.attempt))
        }
        conn.send(.head(head))
        for p in up.parts[up.sent...] { conn.send(p) }
        up.sent = up.parts.count
        if !up.keepsBody {
            up.parts.removeAll(keepingCapacity: true)
            up.sent = 0
        }
        if up.target.retryPolicy?.perTryIdleTimeout != nil { up.lastUpstreamActivity = .now() }
        upstream = up
        conn.flush()
        startPerTryTimer()
        if readPending && conn.isWritable {
            readPending = false
            context.read()
        }
    }

    /// A request body part from downstream: sent to the attempt in progress, kept for retries while allowed.
    func requestBody(_ part: HTTPClientRequestPart, bytes: Int) {
        guard upstream != nil else { return }
        if case .forwarding(let conn) = phase, !upstream!.keepsBody, upstream!.parts.isEmpty {
            // Not retried: straight through, nothing kept.
            conn.send(part)
            return
        }
        let up = upstream!
        up.parts.append(part)
        up.bufferedBytes += bytes
        if up.keepsBody && up.bufferedBytes > up.bufferLimit {
            // Past per_request_buffer_limit_bytes the request can no longer be replayed: it is not retried.
            up.retry = nil
        }
        if case .forwarding(let conn) = phase {
            for p in up.parts[up.sent...] { conn.send(p) }
            up.sent = up.parts.count
        }
        if !up.keepsBody && up.sent == up.parts.count {
            up.parts.removeAll(keepingCapacity: true)
            up.sent = 0
        }
        upstream = up
    }

    /// Ends the current attempt's bookkeeping (not the request).
    private func endAttempt() {
        guard let up = upstream else { return }
        up.perTryTimer?.cancel()
        up.perTryTimer = nil
        up.perTryDeadline = nil
        if let w = up.waiter {
            up.local.pool.cancelWaiter(w)
            up.waiter = nil
        }
        if up.attached {
            up.attached = false
            stats.dec(up.info.stats.rqActive)
            up.info.resources.release(.requests, up.priority)
            if let i = up.hostIndex { up.local.requestEnded(i) }
        }
        upstream = up
    }

    /// Drops the request's upstream side entirely (client gone, route timeout, local reply).
    func abandonUpstream(closeConnection: Bool) {
        guard let up = upstream else { return }
        if case .forwarding(let conn) = phase, closeConnection { conn.close() }
        endAttempt()
        up.backoffTimer?.cancel()
        up.backoffTimer = nil
        if up.holdsRetry {
            up.holdsRetry = false
            up.info.resources.release(.retries, up.priority)
        }
        upstream = nil
    }

    /// An attempt failed before any response went downstream: retry it, or answer the client.
    private func attemptFailed(_ outcome: RetryState.Outcome, reason: String) {
        if case .forwarding(let conn) = phase { conn.close() }
        endAttempt()
        // nil: a retry is scheduled.
        guard let decision = decideRetry(outcome) else { return }
        if case .limitExceeded = decision { responseFlags.insert(.upstreamRetryLimitExceeded) }
        switch outcome {
        case .perTryTimeout: responseFlags.insert(.upstreamRequestTimeout)
        case .connectFailure: responseFlags.insert(.upstreamConnectionFailure)
        case .reset: responseFlags.insert(.upstreamConnectionTermination)
        case .overflow: responseFlags.insert(.upstreamOverflow)
        case .response: break
        }
        switch outcome {
        case .perTryTimeout:
            if let cluster { countUpstreamStatus(504, cluster) }
            finishWithLocalReply(status: .gatewayTimeout, body: LocalReply.timeout)
        case .connectFailure, .reset, .overflow, .response:
            if let cluster { countUpstreamStatus(503, cluster) }
            finishWithLocalReply(status: .serviceUnavailable, body: LocalReply.connectFailure(reason))
        }
    }

    /// Asks the retry policy about a failed attempt. Returns nil when a retry was scheduled, else the decision
    /// that leaves the outcome to the client (counted).
    private func decideRetry(_ outcome: RetryState.Outcome) -> RetryState.Decision? {
        guard let up = upstream, var retry = up.retry else { return .done }
        let resources = up.info.resources
        let priority = up.priority
        let decision = retry.decide(outcome, retryAllowed: { resources.tryAcquire(.retries, priority) },
                                    random: &worker.random)
        up.retry = retry
        upstream = up
        switch decision {
        case .done:
            return decision
        case .limitExceeded:
            stats.inc(up.info.stats.rqRetryLimitExceeded)
            return decision
        case .budgetExhausted:
            stats.inc(up.info.stats.rqRetryOverflow)
            return decision
        case .retry(let backOff):
            stats.inc(up.info.stats.rqRetry)
            stats.inc(up.info.stats.rqRetryBackoffExponential)
            up.holdsRetry = true
            phase = .backoff
            let id = up.attemptID
            up.backoffTimer = context.eventLoop.scheduleTask(in: .nanoseconds(backOff)) { [self] in
                guard let current = upstream, current === up, current.attemptID == id, case .backoff = phase else { return }
                current.backoffTimer = nil
                if current.holdsRetry {
                    current.holdsRetry = false
                    current.info.resources.release(.retries, current.priority)
                }
                upstream = current
                startAttempt()
            }
            upstream = up
            return nil
        }
    }

    /// Circuit-breaker overflow: 503 with `x-envoy-overloaded`, never retried.
    private func overflowed() {
        responseFlags.insert(.upstreamOverflow)
        endAttempt()
        if let cluster { countUpstreamStatus(503, cluster) }
        var extra = HTTPHeaders()
        extra.add(name: "x-envoy-overloaded", value: "true")
        finishWithLocalReply(status: .serviceUnavailable, body: LocalReply.connectFailure("overflow"), extra: extra)
    }

    private func finishWithLocalReply(status: HTTPResponseStatus, body: String, extra: HTTPHeaders = HTTPHeaders()) {
        stream.sendLocalReply(status: status, body: body, headers: extra, closeConnection: false)
    }

    func countUpstreamStatus(_ code: Int, _ cluster: ClusterInfo) {
        stats.inc(cluster.stats.rqCompleted)
        stats.inc(cluster.stats.responseClass(code))
        if let slot = cluster.stats.code(code) { stats.inc(slot) }
    }

    static func connectFailureReason(_ error: Error) -> String {
        if case ChannelError.connectTimeout = error as? ChannelError ?? .ioOnClosedChannel {
            return "connection timeout"
        }
        return "remote connection failure"
    }

    // MARK: Timeouts

    /// The route timeout: from the end of the downstream request, across every attempt.
    func startTimer() {
        guard !routeTimeout.isZero, !routeTimer.isSet, !responseComplete else { return }
        if let at = routeTimer.set(.now() + routeTimeout.timeAmount) { armRouteTimer(at: at) }
    }

    private func armRouteTimer(at time: NIODeadline) {
        let task = context.eventLoop.scheduleTask(deadline: time) { [self] in
            switch routeTimer.fired(now: .now()) {
            case .expired: routeTimedOut()
            case .rearm(let next): armRouteTimer(at: next)
            case .idle: break
            }
        }
        routeTimer.armed(task, at: time)
    }

    private func routeTimedOut() {
        responseFlags.insert(.upstreamRequestTimeout)
        if let cluster { stats.inc(cluster.stats.rqTimeout) }
        stats.inc(listener.stats.rqTimeout)
        if let up = upstream, case .forwarding = phase, let i = up.hostIndex {
            up.local.record(i, .timeout, random: &worker.random)
        }
        abandonUpstream(closeConnection: true)
        if responseStarted {
            context.close(promise: nil)
            return
        }
        if let cluster { countUpstreamStatus(504, cluster) }
        stream.sendLocalReply(status: .gatewayTimeout, body: LocalReply.timeout, closeConnection: false)
    }

    /// The per-try timeout (from when the attempt has its connection and the whole request) and the per-try
    /// idle timeout (reset by every upstream read) share one timer that re-arms lazily.
    func startPerTryTimer() {
        guard let up = upstream, let policy = up.target.retryPolicy,
              case .forwarding = phase, up.perTryTimer == nil else { return }
        let now = NIODeadline.now()
        if up.perTryDeadline == nil, requestComplete, let t = up.perTryTimeout {
            up.perTryDeadline = now + t.timeAmount
        }
        up.perTryIdle = policy.perTryIdleTimeout.flatMap { $0.isZero ? nil : $0.timeAmount }
        var next: NIODeadline?
        if let d = up.perTryDeadline { next = d }
        if let idle = up.perTryIdle {
            let d = up.lastUpstreamActivity + idle
            next = next.map { min($0, d) } ?? d
        }
        guard let fire = next else { upstream = up; return }
        let id = up.attemptID
        up.perTryTimer = context.eventLoop.scheduleTask(deadline: fire) { [self] in
            guard let current = upstream, current === up, current.attemptID == id else { return }
            current.perTryTimer = nil
            upstream = current
            perTryTimerFired()
        }
        upstream = up
    }

    private func perTryTimerFired() {
        guard let up = upstream, case .forwarding = phase, !responseStarted else { return }
        let now = NIODeadline.now()
        let timedOut = up.perTryDeadline.map { now >= $0 } ?? false
        let idledOut = up.perTryIdle.map { now >= up.lastUpstreamActivity + $0 } ?? false
        guard timedOut || idledOut else {
            startPerTryTimer()
            return
        }
        stats.inc(timedOut ? up.info.stats.rqPerTryTimeout : up.info.stats.rqPerTryIdleTimeout)
        if let i = up.hostIndex { up.local.record(i, .timeout, random: &worker.random) }
        attemptFailed(.perTryTimeout, reason: "timeout")
    }

    // MARK: Upstream events

    func upstreamRead(_ part: HTTPClientResponsePart) {
        streamActivity &+= 1
        if let up = upstream, up.perTryIdle != nil { up.lastUpstreamActivity = .now() }
        switch part {
        case .head(let head):
            if head.status.code < 200 && head.status.code != 101 {
                ignoringInformational = true
                return
            }
            receivedResponseHead(head)
        case .body(let buffer):
            if ignoringInformational || !responseStarted { return }
            stream.encodeData(buffer, endStream: false)
        case .end(let trailers):
            if ignoringInformational {
                ignoringInformational = false
                return
            }
            guard responseStarted else { return }
            upstreamResponseEnded(trailers)
        }
    }

    private func receivedResponseHead(_ head: HTTPResponseHead) {
        guard let up = upstream else { return }
        let code = Int(head.status.code)
        if let i = up.hostIndex { up.local.record(i, .httpStatus(code), random: &worker.random) }
        if up.retry != nil, case .forwarding(let conn) = phase {
            switch decideRetry(.response(status: code, headers: head.headers)) {
            case nil:
                // Retrying: this attempt's answer is dropped with its connection.
                conn.close()
                endAttempt()
                if let cluster { countUpstreamStatus(code, cluster) }
                return
            case .done?:
                if upstream?.retry?.retried ?? false, code < 500 { stats.inc(up.info.stats.rqRetrySuccess) }
            case .limitExceeded?, .budgetExhausted?, .retry?:
                break
            }
        }
        respond(head)
    }

    private func respond(_ head: HTTPResponseHead) {
        lifecycle.responseHeadCommitted()
        upstream?.perTryTimer?.cancel()
        upstream?.perTryTimer = nil
        let elapsedMs = (NIODeadline.now() - upstreamStart).nanoseconds / 1_000_000
        var headers = head.headers
        HopByHop.strip(&headers)
        headers.replaceOrAdd(name: "x-envoy-upstream-service-time", value: String(elapsedMs))
        responseCode = Int(head.status.code)
        if streamStart != nil { upstreamResponseStartTime = .now() }
        headers.replaceOrAdd(name: "server", value: listener.hcm.serverName)
        if let up = upstream, up.target.includeAttemptCountInResponse {
            headers.replaceOrAdd(name: "x-envoy-attempt-count", value: String(up.attempt))
        }
        applyResponseMutations(&headers, status: head.status)
        if let cluster { countUpstreamStatus(Int(head.status.code), cluster) }
        stream.encodeHeaders(HTTPResponseHead(version: head.version, status: head.status, headers: headers),
                             endStream: false)
    }

    private func upstreamResponseEnded(_ trailers: HTTPHeaders?) {
        routeTimer.clear()
        guard case .forwarding(let conn) = phase else { return }
        endAttempt()
        upstream = nil
        if !requestComplete { conn.reusable = false }
        conn.pool.release(conn)
        phase = .discarding
        if let trailers, !trailers.isEmpty {
            stream.encodeTrailers(trailers)
        } else {
            stream.encodeData(ByteBuffer(), endStream: true)
        }
    }

    /// The router saw the end of the request (after every HTTP filter passed it on).
    func routerRequestEnded(_ trailers: HTTPHeaders?) {
        if !shadows.isEmpty {
            mirror(.end(trailers), bytes: 0)
            shadows.removeAll()
        }
        switch phase {
        case .connecting, .forwarding, .backoff:
            requestBody(.end(trailers), bytes: 0)
            if case .forwarding(let up) = phase { up.flush() }
            startTimer()
            startPerTryTimer()
        case .idle, .decoding, .discarding:
            break
        }
    }

    func upstreamReadComplete() {
        context.flush()
    }

    func upstreamBecameWritable() {
        if readPending {
            readPending = false
            context.read()
        }
    }

    /// The upstream connection closed under us.
    func upstreamClosed() {
        guard case .forwarding = phase else { return }
        if responseStarted {
            // Mid-response: the only honest signal left is to reset the downstream.
            abandonUpstream(closeConnection: false)
            phase = .discarding
            routeTimer.clear()
            context.close(promise: nil)
            return
        }
        if let up = upstream, let i = up.hostIndex {
            up.local.record(i, .reset, random: &worker.random)
        }
        attemptFailed(.reset, reason: "connection termination")
    }
}
