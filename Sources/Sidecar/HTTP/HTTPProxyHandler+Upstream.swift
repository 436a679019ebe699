import NIOCore
import NIOHTTP1
import SidecarCore
import SidecarUpstream

/// The upstream half of a forwarded request: choosing a host, getting a connection within the circuit
/// breakers, running the attempts, their timers and back-offs, and feeding outlier detection.
///
/// When an attempt starts, fails, is retried or ends is `RouterAttemptStateMachine`'s decision (the per-try
/// timeout, no retry once the response started, overflow never retried); this side feeds it events and runs
/// its actions. The route timeout starts when the downstream request is complete and covers every attempt (a
/// global timeout is never retried).
extension HTTPProxyHandler {
    func forward(_ head: HTTPRequestHead, target: ForwardTarget, request: RouteRequest) {
        // The route resolved its cluster when the snapshot was built; only cluster_header names one per request.
        let snapshot = stream.snapshot
        if upgradeRequested == "connect" && target.terminatesConnect {
            terminateConnect(target, snapshot: snapshot)
            return
        }
        guard let slot = target.clusterSlot ?? snapshot.config.slot(named: target.cluster) else {
            // A cluster that does not exist (cluster_header): Envoy's cluster_not_found_response_code.
            responseFlags.insert(.noClusterFound)
            stream.sendLocalReply(status: .serviceUnavailable, body: "", closeConnection: false,
                                  details: "cluster_not_found")
            return
        }
        let local = snapshot[slot]
        let entry = local.info
        cluster = entry
        responseMutations = target.mutations
        // A gRPC request on a route that reads grpc-timeout times out as its caller asked (Envoy's finalTimeout).
        let timeout = target.timeout(grpc: RouteMatch.isGRPC(request),
                                     grpcTimeoutHeader: head.headers.first(name: "grpc-timeout"))
        routeTimeout = timeout
        if let idle = target.idleTimeout { setStreamIdleTimeout(idle) }

        // The upstream request's own copy of the headers, made once with room for what the proxy adds
        // (x-forwarded-proto, the expected timeout, a trace context): otherwise the first removal copies them and
        // each growth copies them again.
        var headers = head.headers
        headers.reserveCapacity(headers.count + 8)
        let expectContinue = headers.first(name: "expect")?.lowercased() == "100-continue"
        if expectContinue { headers.remove(name: "expect") }
        HopByHop.strip(&headers)
        restoreUpgradeHeaders(&headers, original: head.headers)
        // Request headers are never honoured (see RetryHeaders), so only a route policy makes retries.
        let retry = target.retryPolicy.flatMap {
            RetryState(route: $0, requestHeaders: headers, honorRequestHeaders: false)
        }
        // Envoy's FilterUtility::finalTimeout: the per-try timeout applies with or without a retry state.
        let perTryTimeout = RetryState.perTryTimeout(
            route: target.retryPolicy, requestHeaders: headers, honorRequestHeaders: false,
            globalTimeout: timeout)
        RetryHeaders.strip(&headers)
        // forward_client_cert_details defaults to SANITIZE: a client never gets to assert a certificate.
        if headers.contains(name: "x-forwarded-client-cert") { headers.remove(name: "x-forwarded-client-cert") }
        if !headers.contains(name: "x-forwarded-proto") {
            headers.add(name: "x-forwarded-proto", value: security != nil ? "https" : "http")
        }
        if timeout.isZero {
            headers.remove(name: "x-envoy-expected-rq-timeout-ms")
        } else {
            let expected = perTryTimeout ?? timeout
            headers.replaceOrAddScanningFirst(name: "x-envoy-expected-rq-timeout-ms", value: String(expected.milliseconds))
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
        // Shadows carry the request as the router finalized it, without the attempt's trace context.
        if !target.mirrorPolicies.isEmpty {
            startShadows(target, snapshot: snapshot, headers: headers, method: head.method, uri: head.uri, limit: limit)
        }
        // A context that is the same for every attempt goes into the head the attempts share; per-attempt headers
        // (child spans, the attempt count, added after it) are written by each attempt on its own copy.
        if activeSpan != nil && !tracesPerAttempt(target) { injectTrace(into: &headers) }
        upstream = UpstreamRequest(
            local: local, target: target,
            head: HTTPRequestHead(version: .http1_1, method: head.method, uri: target.path(for: head.uri), headers: headers),
            hash: hash, source: source,
            attempts: RouterAttemptStateMachine(policy: target.retryPolicy, retry: retry, perTryTimeout: perTryTimeout),
            bufferLimit: limit)
        upstreamStart = .now()
        if let up = upstream { startAttempts(up) }
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

    // The attempts' lifecycle is `RouterAttemptStateMachine`'s (kept in `UpstreamRequest.attempts`): what follows
    // feeds it events and runs its actions with what the machine does not hold: the host choice, the pool, the
    // connection, the timers, the circuit breakers, the stats and the replies.

    /// The router chose the cluster: the first attempt starts.
    private func startAttempts(_ up: UpstreamRequest) {
        run(up.attempts.requestRouted(), up)
    }

    /// Picks a host and gets a connection for attempt `attempt`.
    private func startAttempt(_ up: UpstreamRequest, attempt: Int) {
        let entry = up.info
        attemptCount = attempt
        up.sent = 0
        let local = up.local
        if entry.config.type == .ORIGINAL_DST {
            // CLUSTER_PROVIDED: the host is where this connection was going before capture.
            up.host = originalDestination.map { UpstreamHost(address: $0, hostname: $0.ipAddress ?? "", weight: 1) }
            up.hostIndex = nil
        } else {
            let policy = up.attempts.retryPolicy
            let avoid = policy?.avoidPreviousHosts ?? false
            let tried = up.tried
            let maxAttempts = avoid ? max(1, policy?.hostSelectionRetryMaxAttempts ?? 1) : 1
            up.hostIndex = local.choose(hash: up.hash, random: &worker.random, maxAttempts: maxAttempts,
                                        reject: { avoid && tried.contains(local.hosts[$0]) })
            up.host = up.hostIndex.map { local.hosts[$0] }
            up.hostGeneration = local.hostsGeneration
        }
        upstreamHostAddress = up.host?.address
        guard let host = up.host else {
            stats.inc(entry.stats.cxNoneHealthy)
            run(up.attempts.noHealthyHost(), up)
            return
        }
        if up.hostIndex != nil, up.attempts.retryPolicy?.avoidPreviousHosts ?? false { up.tried.append(host) }
        if up.target.autoHostRewrite, entry.config.type.resolvesNames {
            up.head.headers.replaceOrAdd(name: "host", value: host.hostname)
        }
        switch local.pool.acquire(host, source: up.source, priority: up.priority, downstreamHTTP2: multiplexed,
                                 upgrade: upgradeRequested != nil) {
        case .ready(let conn):
            connectionReady(conn, up, attempt: attempt)
        case .overflow:
            run(up.attempts.overflowed(), up)
        case .pending(let future, let waiter):
            up.waiter = waiter
            phase = .connecting
            future.whenComplete { [self] result in
                // The same request (not a later one on this connection) and the same attempt, still waiting.
                guard let current = upstream, current === up, up.attempts.isConnecting(attempt: attempt) else {
                    // The attempt was abandoned (client gone, timeout) while it waited.
                    if case .success(let conn) = result { conn.pool.release(conn) }
                    return
                }
                up.waiter = nil
                switch result {
                case .success(let conn):
                    connectionReady(conn, up, attempt: attempt)
                case .failure(let error):
                    upstreamTransportFailureReason = UpstreamConnectError.transportFailureReason(error)
                    run(up.attempts.connectionFailed(attempt: attempt, timedOut: Self.isConnectTimeout(error)), up)
                }
            }
        }
    }

    private func connectionReady(_ conn: UpstreamConnection, _ up: UpstreamRequest, attempt: Int) {
        let action = up.attempts.connectionReady(
            attempt: attempt, requestAllowed: { up.info.resources.tryAcquire(.requests, up.priority) },
            requestComplete: requestComplete, now: .now())
        run(action, up, connection: conn)
    }

    /// Runs what the attempts' state machine asked for. `connection`: the one the event was about;
    /// `response`: the response head the event was about.
    private func run(_ action: RouterAttemptStateMachine.Action, _ up: UpstreamRequest,
                     connection: UpstreamConnection? = nil, response: HTTPResponseHead? = nil) {
        switch action {
        case .none:
            break
        case .pickHostAndConnect(let attempt, let releasingRetry):
            if releasingRetry {
                up.backoffTimer = nil
                up.info.resources.release(.retries, up.priority)
            }
            startAttempt(up, attempt: attempt)
        case .sendRequest(let attempt, let perTryDeadline):
            guard let connection else { return }
            attach(connection, up, attempt: attempt, perTryDeadline: perTryDeadline)
        case .releaseConnection:
            if let connection { connection.pool.release(connection) }
        case .armPerTryTimer(let deadline):
            armPerTryTimer(up, at: deadline)
        case .releaseFailedAttempt(let failure, let held):
            switch failure {
            case .connectFailure:
                if let i = up.currentHostIndex { up.local.record(i, .connectFailed, random: &worker.random) }
            case .reset, .remoteReset:
                if let i = up.currentHostIndex { up.local.record(i, .reset, random: &worker.random) }
            case .perTryTimeout, .perTryIdleTimeout:
                stats.inc(failure == .perTryTimeout ? up.info.stats.rqPerTryTimeout : up.info.stats.rqPerTryIdleTimeout)
                if let i = up.currentHostIndex { up.local.record(i, .timeout, random: &worker.random) }
            }
            if held == .connection, case .forwarding(let conn) = phase { conn.close() }
            endAttempt(up, held)
            let resources = up.info.resources
            let priority = up.priority
            run(up.attempts.failedAttemptReleased(retryAllowed: { resources.tryAcquire(.retries, priority) },
                                                  random: &worker.random), up)
        case .scheduleRetry(let backOff):
            scheduleRetry(up, after: backOff)
        case .retryResponse(let backOff):
            // Retrying: this attempt's answer is dropped with its connection.
            let conn: UpstreamConnection?
            if case .forwarding(let c) = phase { conn = c } else { conn = nil }
            scheduleRetry(up, after: backOff)
            conn?.close()
            endAttempt(up, .connection)
            if let cluster, let response { countUpstreamStatus(Int(response.status.code), cluster) }
        case .sendResponseHead(_, let verdict):
            countRetries(verdict, up)
            if let response { respond(response) }
        case .localReply(let reply, let held):
            endAttempt(up, held)
            localReply(reply, up, connection: connection)
        case .releaseConnectionAfterResponse:
            guard case .forwarding(let conn) = phase else { return }
            endAttempt(up, .connection)
            upstream = nil
            if !requestComplete { conn.reusable = false }
            conn.pool.release(conn)
            phase = .discarding
        case .resetDownstream(let held):
            // Mid-response: the only honest signal left is to reset the downstream.
            endAttempt(up, held)
            upstream = nil
            phase = .discarding
            routeTimer.clear()
            context.close(promise: nil)
        }
    }

    /// The attempt has its connection: send the head and everything of the body received so far.
    private func attach(_ conn: UpstreamConnection, _ up: UpstreamRequest, attempt: Int, perTryDeadline: NIODeadline?) {
        stats.inc(up.info.stats.rqTotal)
        stats.inc(up.info.stats.rqActive)
        if let i = up.currentHostIndex { up.local.requestStarted(i) }
        conn.stream = self
        phase = .forwarding(conn)
        // Read now: a closed channel forgets its addresses (the cache is read without a lock on the loop).
        upstreamLocalAddress = conn.context?.channel.localAddress
        var head = up.head
        if up.target.includeRequestAttemptCount {
            head.headers.replaceOrAddScanningFirst(name: "x-envoy-attempt-count", value: String(attempt))
        }
        if activeSpan != nil && tracesPerAttempt(up.target) { injectTrace(up, into: &head.headers) }
        conn.send(.head(head))
        for p in up.parts[up.sent...] { conn.send(p) }
        up.sent = up.parts.count
        if !up.keepsBody {
            up.parts.removeAll(keepingCapacity: true)
            up.sent = 0
        }
        // Within a downstream read the read's end flushes (see inDownstreamRead); a connection that became ready
        // later, or a retry, flushes here.
        if !inDownstreamRead { conn.flush() }
        if let perTryDeadline { armPerTryTimer(up, at: perTryDeadline) }
        if readPending && conn.isWritable {
            readPending = false
            context.read()
        }
    }

    /// A request body part from downstream: sent to the attempt in progress, kept for retries while allowed.
    func requestBody(_ part: HTTPClientRequestPart, bytes: Int) {
        guard let up = upstream else { return }
        if case .forwarding(let conn) = phase, !up.keepsBody, up.parts.isEmpty {
            // Not retried: straight through, nothing kept.
            conn.send(part)
            return
        }
        up.parts.append(part)
        up.bufferedBytes += bytes
        if up.keepsBody && up.bufferedBytes > up.bufferLimit {
            // Past per_request_buffer_limit_bytes the request can no longer be replayed: it is not retried.
            up.attempts.bodyOutgrewBuffer()
        }
        if case .forwarding(let conn) = phase {
            for p in up.parts[up.sent...] { conn.send(p) }
            up.sent = up.parts.count
        }
        if !up.keepsBody && up.sent == up.parts.count {
            up.parts.removeAll(keepingCapacity: true)
            up.sent = 0
        }
    }

    /// Gives back what the attempt that ended held (not the request).
    private func endAttempt(_ up: UpstreamRequest, _ held: RouterAttemptStateMachine.Held) {
        up.perTryTimer?.cancel()
        up.perTryTimer = nil
        switch held {
        case .nothing:
            break
        case .connectionWait:
            if let w = up.waiter {
                up.local.pool.cancelWaiter(w)
                up.waiter = nil
            }
        case .connection:
            if up.childSpan != nil { finishChildSpan(up) }
            stats.dec(up.info.stats.rqActive)
            up.info.resources.release(.requests, up.priority)
            if let i = up.currentHostIndex { up.local.requestEnded(i) }
        case .scheduledRetry:
            up.backoffTimer?.cancel()
            up.backoffTimer = nil
            up.info.resources.release(.retries, up.priority)
        }
    }

    /// Drops the request's upstream side entirely (client gone, route timeout, local reply).
    func abandonUpstream(closeConnection: Bool) {
        guard let up = upstream else { return }
        // Detached first: closing the connection calls back at once (`upstreamClosed`), which must not find the
        // request and act on it (a retry, a 503, the next pipelined request) while it is being dropped.
        upstream = nil
        let held = up.attempts.abandoned()
        if held == .connection, closeConnection, case .forwarding(let conn) = phase { conn.close() }
        endAttempt(up, held)
    }

    /// A retry after `backOff` nanoseconds; the request holds a unit of the retry breaker until it starts.
    private func scheduleRetry(_ up: UpstreamRequest, after backOff: Int64) {
        stats.inc(up.info.stats.rqRetry)
        stats.inc(up.info.stats.rqRetryBackoffExponential)
        phase = .backoff
        up.backoffTimer = context.eventLoop.scheduleTask(in: .nanoseconds(backOff)) { [self] in
            guard let current = upstream, current === up else { return }
            run(up.attempts.backOffElapsed(), up)
        }
    }

    /// The retry counters of a request that is not retried further.
    private func countRetries(_ verdict: RouterAttemptStateMachine.RetryVerdict, _ up: UpstreamRequest) {
        switch verdict {
        case .notRetried: break
        case .succeeded: stats.inc(up.info.stats.rqRetrySuccess)
        case .limitExceeded: stats.inc(up.info.stats.rqRetryLimitExceeded)
        case .overflow: stats.inc(up.info.stats.rqRetryOverflow)
        }
    }

    /// The router answers the client itself; the request is over for it.
    private func localReply(_ reply: RouterAttemptStateMachine.LocalReply, _ up: UpstreamRequest,
                            connection: UpstreamConnection?) {
        switch reply {
        case .noHealthyUpstream:
            responseFlags.insert(.noHealthyUpstream)
            finishWithLocalReply(status: .serviceUnavailable, body: "no healthy upstream", details: "no_healthy_upstream")
        case .overflow(let requestBreaker):
            if requestBreaker {
                // max_requests: Envoy 1.38+ fails the stream with an overflow counted in upstream_rq_active_overflow.
                if let connection { connection.pool.release(connection) }
                stats.inc(up.info.stats.rqActiveOverflow)
            }
            // Circuit-breaker overflow: 503 with `x-envoy-overloaded`, never retried.
            responseFlags.insert(.upstreamOverflow)
            if let cluster { countUpstreamStatus(503, cluster) }
            var extra = HTTPHeaders()
            extra.add(name: "x-envoy-overloaded", value: "true")
            finishWithLocalReply(status: .serviceUnavailable, body: LocalReply.connectFailure("overflow"), extra: extra,
                                 details: LocalReply.resetDetails("overflow", transportFailure: nil))
        case .failed(let failure, let verdict):
            countRetries(verdict, up)
            if verdict == .limitExceeded { responseFlags.insert(.upstreamRetryLimitExceeded) }
            switch failure {
            case .perTryTimeout, .perTryIdleTimeout:
                responseFlags.insert(.upstreamRequestTimeout)
                if let cluster { countUpstreamStatus(504, cluster) }
                finishWithLocalReply(status: .gatewayTimeout, body: LocalReply.timeout,
                                     details: failure == .perTryTimeout ? "upstream_per_try_timeout"
                                        : "upstream_per_try_idle_timeout")
            case .connectFailure(let timedOut):
                responseFlags.insert(.upstreamConnectionFailure)
                if let cluster { countUpstreamStatus(503, cluster) }
                let reason = timedOut ? "connection timeout" : "remote connection failure"
                finishWithLocalReply(
                    status: .serviceUnavailable, body: LocalReply.connectFailure(reason),
                    details: LocalReply.resetDetails(reason, transportFailure: timedOut ? nil : upstreamTransportFailureReason))
            case .reset:
                responseFlags.insert(.upstreamConnectionTermination)
                if let cluster { countUpstreamStatus(503, cluster) }
                finishWithLocalReply(
                    status: .serviceUnavailable, body: LocalReply.connectFailure("connection termination"),
                    details: LocalReply.resetDetails("connection termination", transportFailure: nil))
            case .remoteReset(let refused):
                // Envoy's words for a stream the HTTP/2 upstream reset (UR).
                responseFlags.insert(.upstreamRemoteReset)
                if let cluster { countUpstreamStatus(503, cluster) }
                let reason = refused ? "remote refused stream reset" : "remote reset"
                finishWithLocalReply(
                    status: .serviceUnavailable, body: LocalReply.connectFailure(reason),
                    details: LocalReply.resetDetails(reason, transportFailure: nil))
            }
        }
    }

    private func finishWithLocalReply(status: HTTPResponseStatus, body: String, extra: HTTPHeaders = HTTPHeaders(),
                                      details: String) {
        stream.sendLocalReply(status: status, body: body, headers: extra, closeConnection: false, details: details)
    }

    func countUpstreamStatus(_ code: Int, _ cluster: ClusterInfo) {
        stats.inc(cluster.stats.rqCompleted)
        stats.inc(cluster.stats.responseClass(code))
        cluster.stats.countCode(code, cluster: cluster.name, in: stats, dynamic: worker.registry.dynamic)
    }

    static func isConnectTimeout(_ error: Error) -> Bool {
        if case ChannelError.connectTimeout = error as? ChannelError ?? .ioOnClosedChannel { return true }
        return false
    }

    // MARK: Timeouts

    /// The route timeout: from the end of the downstream request, across every attempt.
    func startTimer() {
        guard !routeTimeout.isZero, !routeTimer.isSet, !responseComplete else { return }
        if let at = routeTimer.set(.now() + routeTimeout.timeAmount) { armRouteTimer(at: at) }
    }

    private func armRouteTimer(at time: NIODeadline) {
        guard let timer = scheduleTimer(at: time, .route) else { return }  // the event loop is shutting down
        routeTimer.armed(timer, at: time)
    }

    func routeTimerFired() {
        switch routeTimer.fired(now: .now()) {
        case .expired: routeTimedOut()
        case .rearm(let next): armRouteTimer(at: next)
        case .idle: break
        }
    }

    private func routeTimedOut() {
        responseFlags.insert(.upstreamRequestTimeout)
        if let cluster { stats.inc(cluster.stats.rqTimeout) }
        stats.inc(listener.stats.rqTimeout)
        if let up = upstream {
            // Never retried: whatever the attempt held goes, its host is charged a timeout.
            let held = up.attempts.routeTimeoutFired()
            if held == .connection {
                if let i = up.currentHostIndex { up.local.record(i, .timeout, random: &worker.random) }
                if case .forwarding(let conn) = phase { conn.close() }
            }
            endAttempt(up, held)
            upstream = nil
        }
        if responseStarted {
            context.close(promise: nil)
            return
        }
        if let cluster { countUpstreamStatus(504, cluster) }
        stream.sendLocalReply(status: .gatewayTimeout, body: LocalReply.timeout, closeConnection: false,
                              details: "response_timeout")
    }

    /// The per-try timeout and the per-try idle timeout share one timer, armed where the attempts' state machine
    /// says; it re-arms lazily when upstream reads moved the idle deadline on.
    private func armPerTryTimer(_ up: UpstreamRequest, at deadline: NIODeadline) {
        guard let attempt = up.attempts.currentAttempt else { return }
        up.perTryTimer = context.eventLoop.scheduleTask(deadline: deadline) { [self] in
            guard let current = upstream, current === up, up.attempts.currentAttempt == attempt else { return }
            up.perTryTimer = nil
            run(up.attempts.perTryTimeoutFired(attempt: attempt, requestComplete: requestComplete, now: .now()), up)
        }
    }

    // MARK: Upstream events

    func upstreamRead(_ part: HTTPClientResponsePart) {
        streamActivity &+= 1
        if let up = upstream, up.attempts.tracksActivity { up.attempts.upstreamActivity(now: .now()) }
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
            if upgradeAccepted {
                // The 101's end: what follows on both connections is the upgraded protocol.
                startTunnel()
                return
            }
            guard responseStarted else { return }
            upstreamResponseEnded(trailers)
        }
    }

    private func receivedResponseHead(_ head: HTTPResponseHead) {
        guard let up = upstream else { return }
        let code = Int(head.status.code)
        up.childStatus = code
        if let i = up.currentHostIndex { up.local.record(i, .httpStatus(code), random: &worker.random) }
        let resources = up.info.resources
        let priority = up.priority
        let action = up.attempts.responseHeadReceived(
            status: code, headers: head.headers, retryAllowed: { resources.tryAcquire(.retries, priority) },
            random: &worker.random)
        run(action, up, response: head)
    }

    private func respond(_ head: HTTPResponseHead) {
        lifecycle.responseHeadCommitted()
        upstream?.perTryTimer?.cancel()
        upstream?.perTryTimer = nil
        let elapsedMs = (NIODeadline.now() - upstreamStart).nanoseconds / 1_000_000
        var headers = head.headers
        if upgradeRequested != nil && (head.status == .switchingProtocols
            || (upgradeRequested == "connect" && (200..<300).contains(Int(head.status.code)))) {
            // Envoy passes a 101 on with its upgrade headers where they were, and without a service time.
            acceptUpgrade(&headers)
        } else {
            HopByHop.strip(&headers)
            headers.replaceOrAddScanningFirst(name: "x-envoy-upstream-service-time", value: String(elapsedMs))
        }
        responseCode = Int(head.status.code)
        responseCodeDetails = "via_upstream"
        if streamStart != nil { upstreamResponseStartTime = .now() }
        headers.replaceOrAddScanningFirst(name: "server", value: listener.hcm.serverName)
        if let up = upstream, up.target.includeAttemptCountInResponse {
            headers.replaceOrAddScanningFirst(name: "x-envoy-attempt-count", value: String(up.attempts.attempts))
        }
        applyResponseMutations(&headers, status: head.status)
        if let cluster { countUpstreamStatus(Int(head.status.code), cluster) }
        let response = HTTPResponseHead(version: head.version, status: head.status, headers: headers)
        if headEndsStream {
            pendingEndHead = response
            return
        }
        stream.encodeHeaders(response, endStream: false)
    }

    /// An HTTP/2 upstream answered with one header block (e.g. a gRPC trailers-only response): the response is the
    /// head alone, which goes down ending the stream (HTTP/2: one HEADERS frame; HTTP/1: `content-length: 0`).
    func upstreamHeadEndedStream(_ head: HTTPResponseHead) {
        headEndsStream = true
        upstreamRead(.head(head))
        headEndsStream = false
        upstreamRead(.end(nil))
    }

    private func upstreamResponseEnded(_ trailers: HTTPHeaders?) {
        routeTimer.clear()
        guard let up = upstream, case .forwarding = phase else { return }
        let action = up.attempts.responseEnded()
        run(action, up)
        guard case .releaseConnectionAfterResponse = action else { return }
        // Envoy records it only for a request that was complete before its response.
        if let sent = requestSentAt { stats.record(up.info.stats.rqTime, from: sent, to: .now()) }
        if let head = pendingEndHead {
            pendingEndHead = nil
            stream.encodeHeaders(head, endStream: true)
            return
        }
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
            if case .forwarding(let up) = phase, !inDownstreamRead { up.flush() }
            startTimer()
            let now = NIODeadline.now()
            requestSentAt = now
            if let up = upstream { run(up.attempts.requestEnded(requestComplete: requestComplete, now: now), up) }
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
        // A tunnel's end is the tunnel's business (it closes the other side after what it was sent).
        if upgraded { return }
        guard let up = upstream, case .forwarding(let conn) = phase else { return }
        if let code = conn.resetCode {
            stats.inc(up.info.stats.rqRxReset)
            run(up.attempts.upstreamReset(.remoteReset(refused: code == .refusedStream)), up)
        } else {
            run(up.attempts.upstreamReset(), up)
        }
    }
}
