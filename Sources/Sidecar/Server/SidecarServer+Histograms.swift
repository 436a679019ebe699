import NIOConcurrencyHelpers
import NIOCore
import SidecarCore

/// Histogram counts as of the last two stats flushes, merged over workers.
struct FlushedHistograms: Sendable {
    var previous: HistogramCounts = [:]
    var last: HistogramCounts = [:]
    /// Flushes so far: the interval part exists once there has been one.
    var flushes = 0
}

/// What admin shows of the histograms: every value recorded until now, and the values recorded in the last
/// complete stats flush interval.
struct HistogramsView: Sendable {
    /// Merged over workers now (Envoy's cumulative stops at its last flush; ours is up to the read).
    var cumulative: HistogramCounts
    /// Recorded between the last two flushes (the first flush: since start); nil before the first flush.
    var interval: HistogramCounts?
}

extension SidecarServer {
    /// Every worker's histogram counts, summed. Asked of each worker on its own loop; the workers keep
    /// recording into their own arrays meanwhile, without a lock.
    func collectHistograms() -> EventLoopFuture<HistogramCounts> {
        let futures = workers.map { w in w.loop.submit { w.worker.value.stats.histogramSnapshot() } }
        return EventLoopFuture.whenAllSucceed(futures, on: group.next()).map { snaps in
            var total: HistogramCounts = [:]
            for s in snaps { HistogramStatistics.add(s, into: &total) }
            return total
        }
    }

    /// The histograms as admin shows them now.
    func histogramsView() -> EventLoopFuture<HistogramsView> {
        let flushed = flushedHistograms
        return collectHistograms().map { cumulative in
            let f = flushed.withLockedValue { $0 }
            guard f.flushes > 0 else { return HistogramsView(cumulative: cumulative, interval: nil) }
            return HistogramsView(cumulative: cumulative, interval: HistogramStatistics.difference(f.last, f.previous))
        }
    }

    /// Envoy's stats flush, for histograms: every `stats_flush_interval` the merged counts are kept, so that the
    /// last complete interval can be shown beside the cumulative values.
    func startStatsFlush() {
        guard !registry.histograms.isEmpty else { return }
        let interval = bootstrap.statsFlushInterval.timeAmount
        let loop = group.next()
        statsFlushTask = loop.scheduleRepeatedAsyncTask(initialDelay: interval, delay: interval) { [weak self] task in
            guard let self else {
                task.cancel()
                return loop.makeSucceededVoidFuture()
            }
            let flushed = self.flushedHistograms
            return self.collectHistograms().map { merged in
                flushed.withLockedValue { f in
                    f.previous = f.last
                    f.last = merged
                    f.flushes += 1
                }
            }
        }
    }
}
