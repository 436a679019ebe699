import NIOCore
import NIOHTTP1
import SidecarCore
import SidecarUpstream
import SidecarTracing

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
    /// The attempts (first try, retries, per-try timeouts) as a state machine; the handler runs its actions.
    var attempts: RouterAttemptStateMachine
    /// Body parts not yet sent to the current attempt, and (while retries are possible) every part so far.
    var parts: [HTTPClientRequestPart] = []
    /// How many of `parts` the current attempt has been sent.
    var sent = 0
    var bufferedBytes = 0
    let bufferLimit: Int

    // What the current attempt holds, for the handler to give back (the state machine says when).
    /// Index of the host in the thread-local cluster when it was chosen (nil for ORIGINAL_DST destinations); the
    /// host list may be replaced while the attempt runs (EDS, DNS), so it is read through `currentHostIndex`.
    var hostIndex: Int?
    /// The thread-local cluster's `hostsGeneration` when `hostIndex` was chosen.
    var hostGeneration = 0
    var host: UpstreamHost?

    /// Where the attempt's host is in the cluster's host list now; nil when it has none or the host was removed.
    var currentHostIndex: Int? {
        guard let i = hostIndex, let host else { return nil }
        return local.currentIndex(i, generation: hostGeneration, host: host)
    }
    /// Hosts already tried (previous_hosts predicate), by host: indices may move when the host list is replaced.
    var tried: [UpstreamHost] = []
    /// The pool's queue entry while the attempt waits for a connection.
    var waiter: Int?
    var perTryTimer: Scheduled<Void>?
    var backoffTimer: Scheduled<Void>?
    /// The current attempt's span (the router's `start_child_span`) and the status its response had (0: none).
    var childSpan: Span?
    var childStatus = 0

    init(local: ThreadLocalCluster, target: ForwardTarget, head: HTTPRequestHead, hash: UInt64?,
         source: UpstreamSource, attempts: RouterAttemptStateMachine, bufferLimit: Int) {
        self.local = local
        self.info = local.info
        self.target = target
        self.head = head
        self.priority = target.priority
        self.hash = hash
        self.source = source
        self.attempts = attempts
        self.bufferLimit = bufferLimit
    }

    /// Body parts are kept only while a retry could need them again.
    var keepsBody: Bool { attempts.keepsBody }
}
@available(*, unavailable) extension UpstreamRequest: Sendable {}
