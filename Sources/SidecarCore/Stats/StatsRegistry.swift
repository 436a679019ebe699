import NIOCore

/// The names of every stat, fixed at start-up. Workers count into flat per-loop arrays indexed by
/// slot, so the hot path is one add with no lock and no lookup; admin sums the arrays on read.
public final class StatsRegistry: @unchecked Sendable {
    // Only mutated before the server starts; read-only afterwards.
    public enum Kind: Sendable { case counter, gauge }

    public private(set) var names: [String] = []
    public private(set) var kinds: [Kind] = []
    /// For the Prometheus form: the stat family and its labels, e.g. ("cluster.upstream_rq_total", [("envoy_cluster_name", "c1")]).
    public private(set) var prometheus: [(family: String, labels: [(String, String)])] = []
    /// Slots whose value is shown only when non-zero (per-code counters Envoy creates lazily).
    public private(set) var lazy: [Bool] = []

    /// Gauges read when stats are shown instead of counted by workers, by slot: values that live in shared
    /// state of their own (circuit-breaker atomics). Their worker slots stay 0.
    public private(set) var computed: [Int: @Sendable () -> Int] = [:]

    /// Counters named at run time (created when first counted).
    public let dynamic = DynamicStats()

    /// Histograms, by histogram slot (a numbering of their own: slot h's counts are at h × `HistogramLayout.stride`
    /// in each worker's histogram array).
    public private(set) var histograms: [Histogram] = []

    public struct Histogram: Sendable {
        public var name: String
        /// For the Prometheus form, as for counters: e.g. ("cluster.upstream_rq_time", [("envoy_cluster_name", "c1")]).
        public var family: String
        public var labels: [(String, String)]
        /// Shown only once it has a value, as Envoy creates `cluster.<name>.upstream_rq_time` on first use.
        public var lazy: Bool
    }

    /// Slots by name, for `registerOnce`.
    private var slotsByName: [String: Int] = [:]

    public init() {}

    public var count: Int { names.count }

    @discardableResult
    public func register(_ name: String, _ kind: Kind, family: String? = nil, labels: [(String, String)] = [],
                         lazy isLazy: Bool = false) -> Int {
        names.append(name)
        kinds.append(kind)
        prometheus.append((family ?? name, labels))
        lazy.append(isLazy)
        slotsByName[name] = names.count - 1
        return names.count - 1
    }

    /// The slot already registered under `name`, else a new one: for stats that several filters may name
    /// alike and then share, as they do in Envoy's store (RBAC filters with the same prefixes).
    @discardableResult
    public func registerOnce(_ name: String, _ kind: Kind, family: String? = nil, labels: [(String, String)] = [])
        -> Int
    {
        if let slot = slotsByName[name] { return slot }
        return register(name, kind, family: family, labels: labels)
    }

    /// Registers a histogram of whole-millisecond values; returns its histogram slot for `WorkerStats.record`.
    @discardableResult
    public func registerHistogram(_ name: String, family: String? = nil, labels: [(String, String)] = [],
                                  lazy isLazy: Bool = false) -> Int {
        histograms.append(Histogram(name: name, family: family ?? name, labels: labels, lazy: isLazy))
        return histograms.count - 1
    }

    /// The slot registered under `name`, if any (a lookup, safe while workers run).
    public func slot(named name: String) -> Int? { slotsByName[name] }

    /// Registers a gauge whose value `read` supplies when stats are shown; admin renders it like any other
    /// gauge (text, JSON, Prometheus, `filter`, `usedonly`).
    @discardableResult
    public func registerComputed(_ name: String, kind: Kind = .gauge, family: String? = nil, labels: [(String, String)] = [],
                                 _ read: @escaping @Sendable () -> Int) -> Int {
        let slot = register(name, kind, family: family, labels: labels)
        computed[slot] = read
        return slot
    }

    /// The workers' summed values with every computed gauge read now: the values admin shows.
    public func resolvingComputed(_ values: [Int]) -> [Int] {
        guard !computed.isEmpty else { return values }
        var out = values
        for (slot, read) in computed where slot < out.count { out[slot] = read() }
        return out
    }
}

/// One event loop's stat values. Owned by that loop's worker; never shared across threads.
public final class WorkerStats {
    @usableFromInline package let values: UnsafeMutablePointer<Int>
    package let count: Int
    /// Every histogram's counts, `HistogramLayout.stride` integers each, allocated once here so that recording
    /// never allocates.
    @usableFromInline package let histogramValues: UnsafeMutablePointer<Int>
    package let histogramCount: Int

    /// Room for every stat and histogram `registry` has now (register first).
    package convenience init(registry: StatsRegistry) {
        self.init(count: registry.count, histograms: registry.histograms.count)
    }

    package init(count: Int, histograms: Int) {
        self.count = count
        values = .allocate(capacity: max(count, 1))
        values.initialize(repeating: 0, count: max(count, 1))
        histogramCount = histograms
        let cells = max(histograms * HistogramLayout.stride, 1)
        histogramValues = .allocate(capacity: cells)
        histogramValues.initialize(repeating: 0, count: cells)
    }

    deinit {
        values.deallocate()
        histogramValues.deallocate()
    }

    /// Records a value in ms into histogram slot `histogram`.
    @inlinable @inline(__always) package func record(_ histogram: Int, milliseconds v: Int) {
        let h = histogramValues + histogram &* HistogramLayout.stride
        h[HistogramLayout.bucket(v)] &+= 1
        h[HistogramLayout.sumIndex] &+= v
        h[HistogramLayout.binsOffset &+ HistogramLayout.bin(v)] &+= 1
    }

    /// Records the whole milliseconds from `start` to `end`, truncated as Envoy truncates its timings.
    @inlinable @inline(__always) package func record(_ histogram: Int, from start: NIODeadline, to end: NIODeadline) {
        let ns = end.uptimeNanoseconds &- start.uptimeNanoseconds
        record(histogram, milliseconds: end < start ? 0 : Int(ns / 1_000_000))
    }

    /// A copy of every histogram's counts, for admin to merge with the other workers'.
    package func histogramSnapshot() -> [Int] {
        Array(UnsafeBufferPointer(start: histogramValues, count: histogramCount * HistogramLayout.stride))
    }

    // Counted per request from every target: inlinable, or each count is a call across the module boundary
    // (`@inline(__always)` alone does not cross it; package declarations get no cross-module optimisation).
    @inlinable @inline(__always) package func inc(_ slot: Int) { values[slot] &+= 1 }
    @inlinable @inline(__always) package func dec(_ slot: Int) { values[slot] &-= 1 }
    @inlinable @inline(__always) package func add(_ slot: Int, _ n: Int) { values[slot] &+= n }

    package func snapshot() -> [Int] { Array(UnsafeBufferPointer(start: values, count: count)) }

    /// `/reset_counters`: gauges keep their values.
    package func resetCounters(_ kinds: [StatsRegistry.Kind]) {
        for i in 0..<count where kinds[i] == .counter { values[i] = 0 }
    }
}

@available(*, unavailable) extension WorkerStats: Sendable {}
