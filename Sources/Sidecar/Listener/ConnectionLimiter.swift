import Atomics
import NIOCore
import SidecarCore

/// One `envoy.filters.network.connection_limit` filter of a filter chain, shared by every worker: a new connection
/// takes a place if fewer than `max_connections` hold one, and gives it back when it closes; over the limit it is
/// counted (`connection_limit.<stat_prefix>.limited_connections`) and closed, after `delay` if one is set, before any
/// other filter sees it, as Envoy's filter does. `active_connections` is the places held.
final class ConnectionLimiter: Sendable {
    let config: ConnectionLimitConfig
    let active = ManagedAtomic<Int>(0)
    let limited = ManagedAtomic<Int>(0)

    init(_ config: ConnectionLimitConfig) { self.config = config }

    /// A place for a new connection, or false (counted) when the limit is reached.
    func tryAcquire() -> Bool {
        while true {
            let n = active.load(ordering: .relaxed)
            if n >= config.maxConnections {
                limited.wrappingIncrement(ordering: .relaxed)
                return false
            }
            if active.compareExchange(expected: n, desired: n + 1, ordering: .relaxed).exchanged { return true }
        }
    }

    func release() { active.wrappingDecrement(ordering: .relaxed) }

    /// The chain's limits for a new connection: true when every one has room (the places are given back when the
    /// channel closes); else the connection is closed, at once or after the refusing filter's delay.
    static func admit(_ channel: Channel, _ limiters: [ConnectionLimiter]) -> Bool {
        var taken: [ConnectionLimiter] = []
        for limiter in limiters {
            guard limiter.tryAcquire() else {
                for t in taken { t.release() }
                if let delay = limiter.config.delay {
                    channel.eventLoop.scheduleTask(in: delay.timeAmount) { channel.close(promise: nil) }
                } else {
                    channel.close(promise: nil)
                }
                return false
            }
            taken.append(limiter)
        }
        if !taken.isEmpty {
            channel.closeFuture.whenComplete { _ in for t in taken { t.release() } }
        }
        return true
    }

    /// `connection_limit.<prefix>.limited_connections` and `.active_connections`, summed over the filters that share
    /// the prefix.
    static func registerStats(_ limiters: [ConnectionLimiter], registry: StatsRegistry) {
        for (prefix, group) in Dictionary(grouping: limiters, by: { $0.config.statPrefix }) {
            registry.registerComputed("connection_limit.\(prefix).limited_connections", kind: .counter) {
                group.reduce(0) { $0 + $1.limited.load(ordering: .relaxed) }
            }
            registry.registerComputed("connection_limit.\(prefix).active_connections", kind: .gauge) {
                group.reduce(0) { $0 + $1.active.load(ordering: .relaxed) }
            }
        }
    }
}
