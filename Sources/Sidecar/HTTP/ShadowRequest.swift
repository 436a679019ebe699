import NIOCore
import NIOHTTP1
import SidecarCore
import SidecarUpstream

/// One mirrored copy of a request (a route's `request_mirror_policies`): sent to its cluster on a pooled upstream
/// connection of the same worker, its answer read and dropped. It counts in the cluster's stats and breakers like
/// any request, never retries, and never affects the original: a copy that cannot connect, overflows a breaker or
/// outgrows its buffer while connecting is simply abandoned.
final class ShadowRequest: UpstreamResponseReceiver {
    private let worker: Worker
    /// The mirror cluster in the original stream's config snapshot.
    private let local: ThreadLocalCluster
    private let entry: ClusterInfo
    private let priority: CircuitBreakerThresholds.Priority
    private var connection: UpstreamConnection?
    private var waiter: Int?
    /// Parts that arrived while connecting; past `bufferLimit` bytes the copy is abandoned.
    private var pending: [HTTPClientRequestPart] = []
    private var pendingBytes = 0
    private let bufferLimit: Int
    private var requestEnded = false
    private var holdsRequest = false
    private var ignoringInformational = false
    private(set) var done = false

    init?(worker: Worker, cluster local: ThreadLocalCluster, head: HTTPRequestHead, source: UpstreamSource,
          priority: CircuitBreakerThresholds.Priority, bufferLimit: Int, random: inout FastRandom) {
        self.worker = worker
        self.local = local
        entry = local.info
        self.priority = priority
        self.bufferLimit = bufferLimit
        guard let hostIndex = local.choose(hash: nil, random: &random) else {
            worker.stats.inc(entry.stats.cxNoneHealthy)
            return nil
        }
        pending.append(.head(head))
        switch local.pool.acquire(local.hosts[hostIndex], source: source, priority: priority) {
        case .ready(let conn):
            attach(conn)
        case .overflow:
            return nil
        case .pending(let future, let waiter):
            self.waiter = waiter
            future.whenComplete { [self] result in
                self.waiter = nil
                switch result {
                case .success(let conn):
                    if done {
                        local.pool.release(conn)
                    } else {
                        attach(conn)
                    }
                case .failure:
                    finish()
                }
            }
        }
    }

    private func attach(_ conn: UpstreamConnection) {
        guard entry.resources.tryAcquire(.requests, priority) else {
            worker.stats.inc(entry.stats.rqActiveOverflow)
            local.pool.release(conn)
            finish()
            return
        }
        holdsRequest = true
        worker.stats.inc(entry.stats.rqTotal)
        worker.stats.inc(entry.stats.rqActive)
        connection = conn
        conn.stream = self
        for p in pending { conn.send(p) }
        pending.removeAll()
        conn.flush()
    }

    /// A part of the original request, as it is forwarded.
    func send(_ part: HTTPClientRequestPart, bytes: Int) {
        guard !done else { return }
        if case .end = part { requestEnded = true }
        if let connection {
            connection.send(part)
            if requestEnded { connection.flush() }
            return
        }
        pending.append(part)
        pendingBytes += bytes
        if pendingBytes > bufferLimit { finish() }
    }

    func flush() { connection?.flush() }

    /// The original request ended without its body (the client left): a copy not yet complete goes too.
    func abandonIfIncomplete() {
        if !requestEnded { finish(closing: true) }
    }

    private func finish(closing: Bool = false) {
        guard !done else { return }
        done = true
        pending.removeAll()
        if let w = waiter {
            local.pool.cancelWaiter(w)
            waiter = nil
        }
        if holdsRequest {
            holdsRequest = false
            worker.stats.dec(entry.stats.rqActive)
            entry.resources.release(.requests, priority)
        }
        if let conn = connection {
            connection = nil
            if closing { conn.close() } else { local.pool.release(conn) }
        }
    }

    // MARK: UpstreamResponseReceiver: the answer is read and dropped.

    var downstreamWritable: Bool { true }

    func upstreamRead(_ part: HTTPClientResponsePart) {
        switch part {
        case .head(let head):
            let code = Int(head.status.code)
            if code < 200 && code != 101 {
                ignoringInformational = true
                return
            }
            worker.stats.inc(entry.stats.rqCompleted)
            worker.stats.inc(entry.stats.responseClass(code))
            entry.stats.countCode(code, cluster: entry.name, in: worker.stats, dynamic: worker.registry.dynamic)
        case .body:
            break
        case .end:
            if ignoringInformational {
                ignoringInformational = false
                return
            }
            if !requestEnded { connection?.reusable = false }
            finish(closing: !requestEnded)
        }
    }

    func upstreamReadComplete() {}
    func upstreamBecameWritable() {}

    func upstreamClosed() {
        connection = nil
        finish()
    }
}

@available(*, unavailable) extension ShadowRequest: Sendable {}
