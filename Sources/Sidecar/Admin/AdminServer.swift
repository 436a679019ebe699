import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SidecarCore
import SidecarUpstream

/// Envoy's admin endpoints, on `admin.address` only.
struct AdminServer {
    let server: SidecarServer

    /// Endpoints that change state: Envoy 1.40 answers GET on them with 405.
    static let mutating: Set<String> = [
        "/quitquitquit", "/healthcheck/fail", "/healthcheck/ok", "/reset_counters", "/drain_listeners", "/logging",
        "/runtime_modify", "/reopen_logs",
    ]

    func bind(host: String, port: Int) throws -> Channel {
        let server = self.server
        let logs = server.bootstrap.admin?.accessLogs ?? []
        let accessLog = logs.isEmpty ? nil : AdminAccessLog(
            logs: logs, runtime: server.context.runtime, hostname: ProcessInfo.processInfo.hostName)
        return try ServerBootstrap(group: server.group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHandler(server: server, accessLog: accessLog))
                }
            }
            .bind(host: host, port: port)
            .wait()
    }
}

final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let server: SidecarServer
    private var head: HTTPRequestHead?
    /// The request body, kept (up to `maxBody`) for endpoints that take form values (`/runtime_modify`).
    private var body = ByteBuffer()
    private static let maxBody = 64 * 1024
    /// `admin.access_log`, nil without one; then the request's facts below are not kept.
    private let accessLog: AdminAccessLog?
    private var connectionID: UInt64 = 0
    private var requestStart: StreamStartTime?
    private var bytesReceived = 0

    init(server: SidecarServer, accessLog: AdminAccessLog?) {
        self.server = server
        self.accessLog = accessLog
        if accessLog != nil { connectionID = DownstreamConnectionLog.nextConnectionID() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.clear()
            if accessLog != nil {
                requestStart = .now()
                bytesReceived = 0
            }
        case .body(var b):
            bytesReceived += b.readableBytes
            if body.readableBytes + b.readableBytes <= Self.maxBody { body.writeBuffer(&b) }
        case .end:
            guard let h = head else { return }
            head = nil
            handle(h, context: context)
        }
    }

    /// Form values of a `application/x-www-form-urlencoded` body, as Envoy's admin reads them when the query
    /// string has none.
    private func formValues(_ head: HTTPRequestHead) -> [(name: String, value: String)] {
        guard let type = head.headers.first(name: "content-type"),
              type.lowercased().hasPrefix("application/x-www-form-urlencoded"),
              let text = body.getString(at: body.readerIndex, length: body.readableBytes) else { return [] }
        return QueryString.parse(Substring(text))
    }

    private func handle(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let parts = head.uri.split(separator: "?", maxSplits: 1)
        let path = String(parts.first ?? "/")
        let query = parts.count > 1 ? QueryString.parse(parts[1]) : []
        func param(_ n: String) -> String? { query.first { $0.name == n }?.value.removingPercentEncoding }
        let keepAlive = head.isKeepAlive
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let accessLog = self.accessLog
        let logged = accessLog.map { _ in
            AdminAccessLog.Request(
                head: head, start: requestStart ?? .now(), end: .now(), bytesReceived: bytesReceived,
                peer: context.channel.remoteAddress, local: context.channel.localAddress, connectionID: connectionID)
        }
        func reply(_ status: HTTPResponseStatus, _ body: String, type: String = "text/plain; charset=UTF-8") {
            let ctx = loopBound.value
            var h = HTTPHeaders()
            h.add(name: "content-type", value: type)
            h.add(name: "cache-control", value: "no-cache, max-age=0")
            h.add(name: "x-content-type-options", value: "nosniff")
            h.add(name: "content-length", value: String(body.utf8.count))
            h.add(name: "date", value: HTTPDate.now())
            h.add(name: "server", value: "envoy")
            // Handed to the access log thread before the client can have its answer.
            if let accessLog, let logged {
                accessLog.log(logged, status: status, headers: h, bodyBytes: body.utf8.count)
            }
            ctx.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: head.version, status: status, headers: h))), promise: nil)
            ctx.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ctx.channel.allocator.buffer(string: body)))), promise: nil)
            let done = ctx.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)))
            if !keepAlive { done.whenComplete { _ in loopBound.value.close(promise: nil) } }
        }

        if Self.isMutating(path), head.method != .POST {
            reply(.methodNotAllowed, "Method \(head.method.rawValue) not allowed, POST required.")
            return
        }
        switch path {
        case "/ready":
            // Envoy: DRAINING (503) while the health check is failed, as when draining.
            if server.isPreInitializing {
                reply(.serviceUnavailable, "PRE_INITIALIZING\n")
            } else if server.isInitializing {
                reply(.serviceUnavailable, "INITIALIZING\n")
            } else if server.isDraining || server.context.healthCheckFailed {
                reply(.serviceUnavailable, "DRAINING\n")
            } else {
                reply(.ok, "LIVE\n")
            }
        case "/stats", "/stats/prometheus":
            let registry = server.registry
            let filter = param("filter").flatMap { try? CompiledRegex($0) }
            if let f = param("filter"), filter == nil {
                reply(.badRequest, "Invalid re2 regex: \(f)\n")
                return
            }
            let usedOnly = query.contains { $0.name == "usedonly" }
            let json = param("format") == "json"
            let prometheus = path == "/stats/prometheus" || param("format") == "prometheus"
            server.collectStats().and(server.histogramsView()).hop(to: context.eventLoop).whenComplete { result in
                guard case .success(let (values, histograms)) = result else {
                    reply(.internalServerError, "stats unavailable\n")
                    return
                }
                let view = StatsView(registry: registry, values: values, histograms: histograms, filter: filter,
                                     usedOnly: usedOnly)
                if prometheus {
                    reply(.ok, view.prometheus())
                } else if json {
                    reply(.ok, view.json(), type: "application/json")
                } else {
                    reply(.ok, view.text())
                }
            }
        case "/server_info":
            reply(.ok, serverInfo(), type: "application/json")
        case "/config_dump":
            // Envoy leaves EDS out unless asked with include_eds.
            let endpoints = query.contains { $0.name == "include_eds" } ? server.endpointDiscovery.assignments : nil
            reply(.ok, ConfigDump.json(server.configSource, startTime: server.startTime,
                                       dynamic: server.dynamicConfig, endpoints: endpoints,
                                       secrets: server.secretsForDump), type: "application/json")
        case "/listeners":
            var out = ""
            for (name, address) in server.listenerTable { out += "\(name)::\(address)\n" }
            reply(.ok, out)
        case "/clusters":
            server.hostReports().hop(to: context.eventLoop).whenComplete { result in
                reply(.ok, self.clustersText((try? result.get()) ?? self.server.snapshot.clusters.map { ($0, []) }))
            }
        case "/quitquitquit":
            reply(.ok, "OK\n")
            server.drainAndStop()
        case "/reopen_logs":
            // Lines still in the workers' buffers go to the reopened files, as in Envoy.
            AccessLogWriter.shared.reopen()
            reply(.ok, "OK\n")
        case "/reset_counters":
            server.resetCounters().hop(to: context.eventLoop).whenComplete { _ in reply(.ok, "OK\n") }
        case "/logging":
            if let lv = param("level") {
                guard let level = Log.Level(name: lv) else {
                    reply(.badRequest, "error: unknown logger level '\(lv)'\n")
                    return
                }
                Log.level = level
            }
            reply(.ok, "active loggers:\n  pilotfish: \(Log.level)\n")
        case "/drain_listeners":
            server.drainAndStop()
            reply(.ok, "OK\n")
        case "/healthcheck/fail", "/healthcheck/ok":
            // Every worker sees the flag at once (one atomic): health_check filters answer 503 and every HTTP/1
            // response closes its connection while it is set.
            server.context.failHealthCheck(path == "/healthcheck/fail")
            reply(.ok, "OK\n")
        case "/runtime":
            reply(.ok, server.context.runtime.json(), type: "application/json")
        case "/runtime_modify":
            var values = query
            if values.isEmpty { values = formValues(head) }
            guard !values.isEmpty else {
                reply(.badRequest, "usage: /runtime_modify?key1=value1&key2=value2&keyN=valueN\n"
                    + "       or send the parameters as form values\n"
                    + "use an empty value to remove a previously added override\n")
                return
            }
            let decoded = values.map { (key: $0.name.removingPercentEncoding ?? $0.name,
                                        value: $0.value.removingPercentEncoding ?? $0.value) }
            guard server.context.runtime.mergeAdminValues(decoded) else {
                reply(.serviceUnavailable, "No admin layer specified")
                return
            }
            reply(.ok, "OK\n")
        default:
            reply(.notFound, "invalid path. admin commands are:\n  /clusters\n  /config_dump\n  /healthcheck/fail\n"
                + "  /healthcheck/ok\n  /listeners\n  /logging\n  /quitquitquit\n  /ready\n  /reset_counters\n"
                + "  /runtime\n  /runtime_modify\n  /server_info\n  /stats\n  /stats/prometheus\n")
        }
    }

    static func isMutating(_ path: String) -> Bool { AdminServer.mutating.contains(path) }

    private func serverInfo() -> String {
        let uptime = Int(Date().timeIntervalSince(server.startTime))
        let state = server.isDraining || server.context.healthCheckFailed ? "DRAINING" : "LIVE"
        return """
        {
         "version": "pilotfish/\(SidecarVersion.string)/envoy-v3-config",
         "state": "\(state)",
         "hot_restart_version": "disabled",
         "command_line_options": {
          "concurrency": \(server.concurrency),
          "drain_time": "\(server.drainTime.nanoseconds / 1_000_000_000)s",
          "mode": "Serve",
          "service_node": "\(JSONText.escape(server.bootstrap.nodeID ?? ""))",
          "service_cluster": "\(JSONText.escape(server.bootstrap.nodeCluster ?? ""))"
         },
         "uptime_current_epoch": "\(uptime)s",
         "uptime_all_epochs": "\(uptime)s"
        }

        """
    }

    /// Envoy's `/clusters` text: circuit-breaker limits per priority, then per host its counters and flags.
    private func clustersText(_ reports: [(cluster: ClusterInfo, hosts: [HostReport])]) -> String {
        var out = ""
        for (c, hosts) in reports {
            let name = c.config.name
            out += "\(name)::observability_name::\(name)\n"
            if c.config.outlierDetection != nil {
                for key in ["success_rate_average", "success_rate_ejection_threshold",
                            "local_origin_success_rate_average", "local_origin_success_rate_ejection_threshold"] {
                    out += "\(name)::outlier::\(key)::-1\n"
                }
            }
            for t in c.config.circuitBreakers {
                let p = t.priority == .DEFAULT ? "default_priority" : "high_priority"
                out += "\(name)::\(p)::max_connections::\(t.maxConnections)\n"
                out += "\(name)::\(p)::max_pending_requests::\(t.maxPendingRequests)\n"
                out += "\(name)::\(p)::max_requests::\(t.maxRequests)\n"
                out += "\(name)::\(p)::max_retries::\(t.maxRetries)\n"
            }
            out += "\(name)::added_via_api::false\n"
            for r in hosts {
                let a = "\(name)::\(r.host.description)"
                // Envoy shows a hostname only when the endpoint has one (DNS name or endpoint.hostname).
                let hostname = r.host.hostname == r.host.address.ipAddress ? "" : r.host.hostname
                out += "\(a)::cx_active::\(r.cxActive)\n"
                out += "\(a)::cx_connect_fail::\(r.cxConnectFail)\n"
                out += "\(a)::cx_total::\(r.cxTotal)\n"
                out += "\(a)::rq_active::\(r.rqActive)\n"
                out += "\(a)::rq_error::\(r.rqError)\n"
                out += "\(a)::rq_pending_active::0\n"
                out += "\(a)::rq_success::\(r.rqSuccess)\n"
                out += "\(a)::rq_timeout::\(r.rqTimeout)\n"
                out += "\(a)::rq_total::\(r.rqTotal)\n"
                out += "\(a)::hostname::\(hostname)\n"
                out += "\(a)::health_flags::\(r.healthFlags)\n"
                out += "\(a)::weight::\(r.host.weight)\n"
                let locality = r.host.group.locality
                out += "\(a)::region::\(locality.region)\n\(a)::zone::\(locality.zone)\n"
                out += "\(a)::sub_zone::\(locality.subZone)\n\(a)::canary::false\n"
                out += "\(a)::priority::\(r.host.group.priority)\n"
                out += "\(a)::success_rate::\(Self.rate(r.successRate))\n"
                out += "\(a)::local_origin_success_rate::\(Self.rate(r.localOriginSuccessRate))\n"
            }
        }
        return out
    }

    private static func rate(_ v: Double) -> String {
        v < 0 ? "-1" : String(format: "%g", v)
    }
}

@available(*, unavailable) extension AdminHandler: Sendable {}

public enum SidecarVersion {
    public static let string = "0.1.0"
}
