/// What admin shows of one histogram: its count, sum, cumulative bucket counts and Envoy's quantiles.
///
/// Quantiles are computed as Envoy's circllhist computes them (Hyndman–Fan type 1 over the log-linear bins):
/// for quantile q of N values the k-th smallest value is taken, k = ⌈q·N⌉ (at least 1), and the n values of a
/// bin [lower, lower + width) are taken to sit at lower + width·j/(n+1), j = 1 … n. Values are whole ms as in
/// Envoy, so the same values give Envoy's numbers (three values of 7 ms: P0 7.025, P50 7.05, P100 7.075).
public struct HistogramStatistics: Sendable, Equatable {
    /// Envoy's `supported_quantiles`, as fractions.
    public static let quantiles: [Double] = [0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1]

    public let count: Int
    /// Exact sum of the recorded values, in ms.
    public let sum: Int
    /// Values at or below each of `HistogramLayout.bounds` (Prometheus `le`), cumulative.
    public let cumulativeBuckets: [Int]
    /// One value per entry of `quantiles`; empty when nothing was recorded.
    public let computedQuantiles: [Double]

    /// `counts`: a histogram laid out as `HistogramLayout` says, starting at `base`.
    public init(_ counts: [Int], base: Int = 0) {
        var running = 0
        var buckets: [Int] = []
        buckets.reserveCapacity(HistogramLayout.boundCount)
        for i in 0..<HistogramLayout.boundCount {
            running &+= counts[base + i]
            buckets.append(running)
        }
        cumulativeBuckets = buckets
        count = running &+ counts[base + HistogramLayout.overflowIndex]
        sum = counts[base + HistogramLayout.sumIndex]
        computedQuantiles = count > 0 ? Self.quantiles(counts, base: base + HistogramLayout.binsOffset, total: count) : []
    }

    private static func quantiles(_ counts: [Int], base: Int, total: Int) -> [Double] {
        var out: [Double] = []
        out.reserveCapacity(quantiles.count)
        var bin = 0
        var below = 0  // values in bins before `bin`
        for q in quantiles {
            let k = min(max(Int((q * Double(total)).rounded(.up)), 1), total)
            while below + counts[base + bin] < k {
                below += counts[base + bin]
                bin += 1
            }
            let n = counts[base + bin]
            let (lower, width) = HistogramLayout.binRange(bin)
            out.append(lower + width * Double(k - below) / Double(n + 1))
        }
        return out
    }

    /// Each histogram of `later` minus the same one in `earlier` (absent there: nothing recorded yet): what was
    /// recorded between two reads.
    public static func difference(_ later: HistogramCounts, _ earlier: HistogramCounts) -> HistogramCounts {
        var out = later
        for (h, counts) in later {
            guard let before = earlier[h], before.count == counts.count else { continue }
            for i in counts.indices { out[h]![i] &-= before[i] }
        }
        return out
    }

    /// Sums `part` into `total`, histogram by histogram.
    public static func add(_ part: HistogramCounts, into total: inout HistogramCounts) {
        for (h, counts) in part {
            if var sum = total[h], sum.count == counts.count {
                for i in counts.indices { sum[i] &+= counts[i] }
                total[h] = sum
            } else {
                total[h] = counts
            }
        }
    }

    /// A histogram with nothing recorded.
    public static let empty = HistogramStatistics(Array(repeating: 0, count: HistogramLayout.stride))
}
