import Atomics
import NIOCore
import SidecarCore

/// The overload manager's `envoy.resource_monitors.global_downstream_max_connections`: one count of downstream
/// connections shared by every worker and every listener that does not set `ignore_global_conn_limit`.
///
/// As Envoy 1.40 does (`TcpListenerImpl::rejectCxOverGlobalLimit`), the place is taken when the connection is
/// accepted, before listener filters and filter chains, and given back when the connection closes. A connection
/// accepted with every place taken is closed at once, unanswered: it never counts in `downstream_cx_total`, only in
/// `listener.<address>.downstream_global_cx_overflow` (a per-worker counter, bumped on the accepting loop) and in
/// `overload.envoy.resource_monitors.global_downstream_max_connections.failed_updates`. The admin listener takes no
/// place. One compare-and-swap per accepted connection; nothing per request.
final class GlobalConnectionLimit: Sendable {
    static let statScope = "overload.\(OverloadManagerConfig.downstreamConnectionsMonitor)"

    let maxConnections: Int
    let active = ManagedAtomic<Int>(0)
    /// Refused allocations (Envoy's `failed_updates` of the proactive resource).
    let failedUpdates = ManagedAtomic<Int>(0)

    init(maxConnections: Int) { self.maxConnections = maxConnections }

    /// A place for a new connection, or false (counted) when every place is taken.
    func tryAcquire() -> Bool {
        while true {
            let n = active.load(ordering: .relaxed)
            if n >= maxConnections {
                failedUpdates.wrappingIncrement(ordering: .relaxed)
                return false
            }
            if active.compareExchange(expected: n, desired: n + 1, ordering: .relaxed).exchanged { return true }
        }
    }

    func release() { active.wrappingDecrement(ordering: .relaxed) }

    /// A just-accepted connection: true when it took a place (given back when the channel closes); else the
    /// channel is closed and false is returned, and the caller counts the listener's overflow.
    func admit(_ channel: Channel) -> Bool {
        guard tryAcquire() else {
            channel.close(promise: nil)
            return false
        }
        channel.closeFuture.whenComplete { _ in self.release() }
        return true
    }

    /// The monitor's stats as Envoy 1.40 shows them: `failed_updates` counts refusals; `pressure` is the gauge Envoy
    /// keeps for every resource monitor, which it updates only for sampled (reactive) monitors, so for this one it
    /// reads 0 however many places are taken (checked with 2 of 2 connections open).
    func registerStats(registry: StatsRegistry) {
        registry.registerComputed("\(Self.statScope).failed_updates", kind: .counter) {
            self.failedUpdates.load(ordering: .relaxed)
        }
        registry.registerComputed("\(Self.statScope).pressure", kind: .gauge) { 0 }
    }
}
