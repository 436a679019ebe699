/// Where one histogram's counts live in a worker's flat histogram array, and which slot a value goes to.
///
/// Values are whole milliseconds, as Envoy records its timing histograms (a duration truncated to ms). Each
/// histogram is `stride` integers:
///
///     [0 ..< 19]    one count per Envoy default bucket bound (0.5, 1, 5, … 3600000 ms): values in
///                   (previous bound, bound]; exact, since values are whole ms
///     [19]          values above the last bound (the `+Inf` bucket's own part)
///     [20]          the sum of the values (exact, in ms)
///     [21 ..< 841]  log-linear bins with two significant digits, like Envoy's circllhist: one bin per value
///                   from 0 to 99, then [10·10^d, 11·10^d), … [99·10^d, 100·10^d) for d = 1 … 8; values of
///                   10^10 ms and more land in the last bin. The quantiles are computed from these.
///
/// Recording is three adds into memory the worker owns: no lock, no atomic, no allocation.
public enum HistogramLayout {
    /// Envoy's default bucket bounds, in ms (`supportedBuckets`).
    public static let bounds: [Double] = [
        0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1_800_000,
        3_600_000,
    ]
    // Constants as inlinable computed properties, so the recording path sees literals (no global accessors).
    @inlinable public static var boundCount: Int { 19 }
    /// Index of the count of values above the last bound.
    @inlinable public static var overflowIndex: Int { 19 }
    @inlinable public static var sumIndex: Int { 20 }
    @inlinable public static var binsOffset: Int { 21 }
    /// 100 bins for 0 … 99, then 90 for each of the eight decades above.
    @inlinable public static var binCount: Int { 820 }
    @inlinable public static var stride: Int { 841 }

    /// The bucket (0 … 19) of a value in ms: the first bound it does not exceed, 19 above them all.
    @inlinable @inline(__always)
    public static func bucket(_ v: Int) -> Int {
        if v <= 100 {
            if v <= 5 { return v <= 0 ? 0 : (v == 1 ? 1 : 2) }
            if v <= 25 { return v <= 10 ? 3 : 4 }
            return v <= 50 ? 5 : 6
        }
        if v <= 10000 {
            if v <= 500 { return v <= 250 ? 7 : 8 }
            if v <= 2500 { return v <= 1000 ? 9 : 10 }
            return v <= 5000 ? 11 : 12
        }
        if v <= 300_000 { return v <= 30000 ? 13 : (v <= 60000 ? 14 : 15) }
        if v <= 1_800_000 { return v <= 600_000 ? 16 : 17 }
        return v <= 3_600_000 ? 18 : 19
    }

    /// The log-linear bin (0 ..< binCount) of a value in ms.
    @inlinable @inline(__always)
    public static func bin(_ v: Int) -> Int {
        if v < 100 { return v < 0 ? 0 : v }
        var m = v
        var d = 0
        while m >= 100 {
            m /= 10
            d += 1
        }
        if d > 8 { return binCount - 1 }
        return 100 + (d - 1) * 90 + (m - 10)
    }

    /// The lower edge and width of a bin, as circllhist defines them: 0 is a bin of width 0, 1 … 9 are
    /// [v, v + 0.1) (two significant digits: 1.0 … 1.1), 10 … 99 are [v, v + 1).
    public static func binRange(_ i: Int) -> (lower: Double, width: Double) {
        if i == 0 { return (0, 0) }
        if i < 10 { return (Double(i), 0.1) }
        if i < 100 { return (Double(i), 1) }
        let d = (i - 100) / 90 + 1
        let m = (i - 100) % 90 + 10
        var scale = 1.0
        for _ in 0..<d { scale *= 10 }
        return (Double(m) * scale, scale)
    }
}
