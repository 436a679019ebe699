import NIOCore
import NIOHTTP1
import SidecarCore
import SidecarUpstream

/// What a downstream request needs while it is forwarded: where it goes, what was sent, what has been tried.
/// One per request in flight; attempts (the first try and each retry) reuse it. A class: it is large and
/// updated from many callbacks, and copying it (as a struct) showed up as memmove in profiles.
final class UpstreamRequest {
    /// The cluster in the stream's config snapshot: this worker's hosts, balancer and pool for it.
    let local: ThreadLocalCluster
    let info: ClusterInfo
    let target: ForwardTarget
    /// The head as it leaves, without the per-attempt `x-envoy-attempt-count`.
    var head: HTTPRequestHead
    let priority: CircuitBreakerThresholds.Priority
    let hash: UInt64?
    let source: UpstreamSource
    /// nil when the request is not retried (no policy, or its body outgrew the buffer limit).
    var retry: RetryState?
    /// Body parts not yet sent to the current attempt, and (while retries are possible) every part so far.
    var parts: [HTTPClientRequestPart] = []
    /// How many of `parts` the current attempt has been sent.
    var sent = 0
    var bufferedBytes = 0
    let bufferLimit: Int

    // The current attempt.
    var attempt = 0
    /// Index of the host in the thread-local cluster (nil for ORIGINAL_DST destinations).
    var hostIndex: Int?
    var host: UpstreamHost?
    /// Hosts already tried (previous_hosts predicate).
    var tried: [Int] = []
    /// Ignores connection results of attempts that were abandoned.
    var attemptID = 0
    var waiter: Int?
    /// The attempt holds a connection and counts in `upstream_rq_active` and the `max_requests` breaker.
    var attached = false
    /// The effective per-try timeout (`RetryState.perTryTimeout`), nil: none.
    var perTryTimeout: ProtoDuration?
    var perTryTimer: Scheduled<Void>?
    var perTryDeadline: NIODeadline?
    var perTryIdle: TimeAmount?
    var lastUpstreamActivity = NIODeadline.uptimeNanoseconds(0)
    var backoffTimer: Scheduled<Void>?
    /// A scheduled retry holds one unit of the `max_retries` breaker until it starts.
    var holdsRetry = false

    init(local: ThreadLocalCluster, target: ForwardTarget, head: HTTPRequestHead, hash: UInt64?,
         source: UpstreamSource, retry: RetryState?, bufferLimit: Int) {
        self.local = local
        self.info = local.info
        self.target = target
        self.head = head
        self.priority = target.priority
        self.hash = hash
        self.source = source
        self.retry = retry
        self.bufferLimit = bufferLimit
    }

    /// Body parts are kept only while a retry could need them again.
    var keepsBody: Bool { retry != nil }
}
@available(*, unavailable) extension UpstreamRequest: Sendable {}
