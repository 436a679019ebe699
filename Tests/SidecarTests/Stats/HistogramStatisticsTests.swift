import NIOCore
import Testing
@testable import SidecarCore

/// The histogram math: where a value lands, how workers' counts merge, and the quantiles Envoy prints.
struct HistogramStatisticsTests {
    /// One histogram's counts with `values` recorded (through a worker's recording path).
    static func counts(_ values: [Int]) -> [Int] {
        let w = WorkerStats(count: 0, histograms: 1)
        for v in values { w.record(0, milliseconds: v) }
        return w.histogramSnapshot()[0] ?? Array(repeating: 0, count: HistogramLayout.stride)
    }

    @Test func valuesLandInEnvoysBucketsByTheirUpperBound() {
        // Whole ms: le="0.5" holds only 0, le="1" adds 1, le="5" adds 2 … 5.
        let cases: [(Int, Int)] = [
            (0, 0), (1, 1), (2, 2), (5, 2), (6, 3), (10, 3), (11, 4), (25, 4), (26, 5), (50, 5), (51, 6), (100, 6),
            (101, 7), (250, 7), (251, 8), (1000, 9), (1001, 10), (10000, 12), (10001, 13), (60000, 14),
            (300_000, 15), (600_001, 17), (3_600_000, 18), (3_600_001, 19),
        ]
        for (v, bucket) in cases { #expect(HistogramLayout.bucket(v) == bucket, "value \(v)") }
        let s = HistogramStatistics(Self.counts([0, 1, 1, 3, 7, 70, 4_000_000]))
        #expect(s.cumulativeBuckets.prefix(7) == [1, 3, 4, 5, 5, 5, 6])
        #expect(s.cumulativeBuckets.last == 6)
        #expect(s.count == 7)
        #expect(s.sum == 4_000_082)
    }

    @Test func everyValueLiesInItsLogLinearBin() {
        var values = Array(0...2000)
        values += [9999, 10000, 123_456, 3_600_000, 999_999_999]
        for v in values {
            let (lower, width) = HistogramLayout.binRange(HistogramLayout.bin(v))
            if v == 0 {
                #expect(lower == 0 && width == 0)
            } else {
                #expect(lower <= Double(v) && Double(v) < lower + max(width, 1), "value \(v)")
            }
        }
        // Two significant digits: 123 and 129 share [120, 130); 130 starts the next bin.
        #expect(HistogramLayout.bin(123) == HistogramLayout.bin(129))
        #expect(HistogramLayout.bin(130) == HistogramLayout.bin(129) + 1)
        // Beyond the last decade everything shares the last bin.
        #expect(HistogramLayout.bin(Int(1e12)) == HistogramLayout.binCount - 1)
    }

    /// The same values Envoy 1.40 recorded for 20 requests through its listener (from its Prometheus buckets),
    /// and the quantiles it printed for them: `P0(…,0) P25(…,0) P50(…,1.05) P75(…,2.075) P90(…,7.05)
    /// P95(…,7.075) P99(…,8.05) … P100(…,8.05)`.
    @Test func quantilesAreEnvoysForTheSameValues() {
        let values = Array(repeating: 0, count: 7) + Array(repeating: 1, count: 5) + [2, 2, 2, 6, 7, 7, 7, 8]
        let s = HistogramStatistics(Self.counts(values))
        #expect(s.computedQuantiles == [0, 0, 1.05, 2.075, 7.05, 7.075, 8.05, 8.05, 8.05, 8.05])
    }

    /// Envoy printed `P0(nan,1.0047619047619047) P25(nan,1.0238095238095237) … P100(nan,1.0952380952380953)` for
    /// twenty values of 1, and `40.5` everywhere for one value of 40.
    @Test func valuesOfOneBinSpreadEvenlyInsideIt() {
        let twenty = HistogramStatistics(Self.counts(Array(repeating: 1, count: 20)))
        #expect(twenty.computedQuantiles.first == 1.0047619047619047)
        #expect(twenty.computedQuantiles[1] == 1.0238095238095237)
        #expect(twenty.computedQuantiles.last == 1.0952380952380953)
        let one = HistogramStatistics(Self.counts([40]))
        #expect(one.computedQuantiles == Array(repeating: 40.5, count: 10))
        // Above 100 the bins are 10^d wide: 1234 ms sits in [1200, 1300).
        #expect(HistogramStatistics(Self.counts([1234])).computedQuantiles.first == 1250)
    }

    @Test func nothingRecordedHasNoQuantiles() {
        let s = HistogramStatistics(Self.counts([]))
        #expect(s.count == 0)
        #expect(s.computedQuantiles.isEmpty)
        #expect(s.cumulativeBuckets == Array(repeating: 0, count: 19))
    }

    @Test func workersMergeBySummingAndIntervalsBySubtracting() {
        let a = Self.counts([3, 3, 400])
        let b = Self.counts([3, 9000])
        var merged: HistogramCounts = [0: a]
        HistogramStatistics.add([0: b], into: &merged)
        #expect(merged[0] == Self.counts([3, 3, 400, 3, 9000]))
        #expect(HistogramStatistics.difference(merged, [0: a]) == [0: b])
        // A histogram the earlier read did not have yet is all new.
        #expect(HistogramStatistics.difference([0: a, 1: b], [0: a])[1] == b)
        let merged0 = merged[0]!
        let s = HistogramStatistics(merged0)
        #expect(s.count == 5)
        #expect(s.sum == 9409)
    }

    @Test func durationsAreTruncatedToWholeMilliseconds() {
        let w = WorkerStats(count: 0, histograms: 2)
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        w.record(0, from: start, to: NIODeadline.uptimeNanoseconds(1_000_000_000 + 2_999_999))
        w.record(1, from: start, to: NIODeadline.uptimeNanoseconds(999_000_000))  // a clock going back records 0
        let snap = w.histogramSnapshot()
        #expect(HistogramStatistics(snap[0]!).sum == 2)
        #expect(HistogramStatistics(snap[1]!).cumulativeBuckets.first == 1)
    }

    /// A worker has no counts for a histogram until it records into it (Envoy makes histograms on first use):
    /// a cluster that never sees a request costs no histogram memory.
    @Test func aHistogramTakesMemoryFromItsFirstValue() {
        let w = WorkerStats(count: 0, histograms: 3)
        #expect(w.histogramSnapshot().isEmpty)
        w.record(2, milliseconds: 5)
        #expect(Array(w.histogramSnapshot().keys) == [2])
        w.grow(count: 0, histograms: 5)
        w.record(4, milliseconds: 1)
        #expect(Set(w.histogramSnapshot().keys) == [2, 4])
        #expect(HistogramStatistics(w.histogramSnapshot()[2]!).sum == 5)
    }
}
