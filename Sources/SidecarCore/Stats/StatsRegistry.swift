import NIOConcurrencyHelpers
import NIOCore

/// The names of every stat. Workers count into flat per-loop arrays indexed by slot, so the hot path is one add
/// with no lock and no lookup; admin sums the arrays on read.
///
/// Most stats are registered before the workers start. Stats of clusters that arrive later (CDS) are registered
/// while workers run: the tables grow under a lock, and each worker grows its own arrays when it installs the
/// snapshot that brings them (`WorkerStats.grow`), on its own loop. A name registered again is the same stat, as
/// in Envoy's store: a cluster whose config changed keeps its counters.
public final class StatsRegistry: @unchecked Sendable {
    public enum Kind: Sendable { case counter, gauge }

    /// Every table, read and grown under `lock`.
    ///
    /// Nothing is kept per slot: names, kinds, Prometheus families and labels are kept per stat registered alone
    /// (`named`) and per run of slots registered together (`ranges`: a cluster's fixed stats, its circuit breakers,
    /// its `upstream_rq_<code>`), whose names are spelled out when shown from a layout every cluster shares.
    /// Per-slot strings and arrays were most of what a cluster cost in memory.
    public struct Table: Sendable {
        /// Slots registered so far.
        public private(set) var count = 0
        /// Gauges read when stats are shown instead of counted by workers, by slot: values that live in shared
        /// state of their own. Their worker slots stay 0.
        public var computed: [Int: @Sendable () -> Int] = [:]
        /// Runs of computed slots read by one function of the slot's place in the run (a cluster's circuit
        /// breakers, a subscription's counters): one closure for the run instead of one per slot.
        public var computedRuns: [(first: Int, count: Int, read: @Sendable (Int) -> Int)] = []
        /// Histograms, by histogram slot (a numbering of their own; each worker keeps a block of
        /// `HistogramLayout.stride` counts per histogram it has recorded into).
        public var histograms: [Histogram] = []
        /// Stats registered one by one, by slot.
        fileprivate var named: [Int: Named] = [:]
        fileprivate var slotsByName: [String: Int] = [:]
        fileprivate var histogramsByName: [String: Int] = [:]
        /// Runs of slots registered together, in slot order.
        public private(set) var ranges: [SlotRange] = []
        fileprivate var rangesByKey: [RangeKey: Int] = [:]
        /// One instance of each family string, shared by every stat that has it (label lists are shared by their
        /// callers: a cluster passes one list to all its registrations).
        fileprivate var families: Set<String> = []
        /// Who registered each histogram (`owned(by:)`), 0 for none; a slot's owner is its entry's.
        public var histogramOwners: [Int32] = []
        public var hiddenOwners: Set<Int32> = []
        fileprivate var ownerIDs: [String: Int32] = [:]
        fileprivate var currentOwner: Int32 = 0

        /// A stat registered alone: its name, kind and, for the Prometheus form, family and labels (e.g.
        /// "http.ingress.downstream_rq_total", ("http.downstream_rq_total", [("envoy_http_conn_manager_prefix",
        /// "ingress")])).
        fileprivate struct Named: Sendable {
            var name: String
            var family: String
            var labels: [(String, String)]
            var kind: Kind
            var lazy: Bool
            var owner: Int32
        }

        fileprivate struct RangeKey: Hashable {
            var prefix: String
            var layout: ObjectIdentifier
        }

        /// Whether slot `i` is shown.
        public func shows(_ i: Int) -> Bool { hiddenOwners.isEmpty || !hiddenOwners.contains(owner(i)) }
        /// Whether histogram `h` is shown.
        public func showsHistogram(_ h: Int) -> Bool {
            hiddenOwners.isEmpty || !hiddenOwners.contains(histogramOwners[h])
        }

        /// Slot `i`'s name.
        public func name(_ i: Int) -> String {
            if let n = named[i] { return n.name }
            guard let r = range(of: i) else { return "" }
            return r.prefix + r.layout.suffix(i - r.first)
        }

        /// Slot `i`'s kind.
        public func kind(_ i: Int) -> Kind {
            if let n = named[i] { return n.kind }
            return range(of: i).map { $0.layout.kind($0.first.distance(to: i)) } ?? .counter
        }

        /// Whether slot `i` is shown only when non-zero (per-code counters Envoy creates lazily).
        public func isLazy(_ i: Int) -> Bool {
            if let n = named[i] { return n.lazy }
            return range(of: i)?.layout.lazy ?? false
        }

        /// Who registered slot `i` (`owned(by:)`), 0 for none.
        public func owner(_ i: Int) -> Int32 {
            if let n = named[i] { return n.owner }
            return range(of: i)?.owner ?? 0
        }

        /// Every slot's kind, in slot order.
        public var kinds: [Kind] { (0..<count).map(kind) }

        /// Slot `i`'s Prometheus family and labels.
        public func family(_ i: Int) -> (family: String, labels: [(String, String)]) {
            if let n = named[i] { return (n.family, n.labels) }
            guard let r = range(of: i) else { return ("", []) }
            return r.layout.family(i - r.first, prefix: r.prefix, labels: r.labels)
        }

        /// The slot named `name`, registered alone or in a run.
        fileprivate func slot(named name: String) -> Int? {
            if let slot = slotsByName[name] { return slot }
            for r in ranges where name.hasPrefix(r.prefix) {
                if let k = r.layout.index(of: name.dropFirst(r.prefix.count)) { return r.first + k }
            }
            return nil
        }

        private func range(of slot: Int) -> SlotRange? {
            var lo = 0, hi = ranges.count - 1
            while lo <= hi {
                let mid = (lo + hi) / 2
                let r = ranges[mid]
                if slot < r.first { hi = mid - 1 } else if slot >= r.first + r.layout.count { lo = mid + 1 } else { return r }
            }
            return nil
        }

        /// The shared instance of `family`.
        fileprivate mutating func intern(_ family: String) -> String {
            if let i = families.firstIndex(of: family) { return families[i] }
            families.insert(family)
            return family
        }

        fileprivate mutating func add(_ named: Named) -> Int {
            let slot = count
            self.named[slot] = named
            count += 1
            return slot
        }

        fileprivate mutating func add(_ layout: SlotLayout, prefix: String, labels: [(String, String)]) -> Int {
            let key = RangeKey(prefix: prefix, layout: ObjectIdentifier(layout))
            if let first = rangesByKey[key] { return first }
            let first = count
            ranges.append(SlotRange(first: first, prefix: prefix, layout: layout, labels: labels, owner: currentOwner))
            rangesByKey[key] = first
            count += layout.count
            return first
        }
    }

    /// Slots registered together: `prefix` (the owner's, e.g. "cluster.c1.") and a layout's names.
    public struct SlotRange: Sendable {
        public var first: Int
        public var prefix: String
        public var layout: SlotLayout
        public var labels: [(String, String)]
        public var owner: Int32
    }

    private let lock = NIOLock()
    private var table = Table()

    /// Counters named at run time (created when first counted).
    public let dynamic = DynamicStats()

    public struct Histogram: Sendable {
        public var name: String
        /// For the Prometheus form, as for counters: e.g. ("cluster.upstream_rq_time", [("envoy_cluster_name", "c1")]).
        public var family: String
        public var labels: [(String, String)]
        /// Shown only once it has a value, as Envoy creates `cluster.<name>.upstream_rq_time` on first use.
        public var lazy: Bool
    }

    public init() {}

    /// Every table as it is now: what admin renders from, read once.
    public var snapshot: Table { lock.withLock { table } }

    public var count: Int { lock.withLock { table.count } }
    /// Every slot's name, spelled out (tests and lookups; admin renders from `snapshot`).
    public var names: [String] {
        let t = snapshot
        return (0..<t.count).map(t.name)
    }
    /// Every slot's kind (`/reset_counters`).
    public var kinds: [Kind] { snapshot.kinds }
    public var histograms: [Histogram] { lock.withLock { table.histograms } }

    /// The stat's slot; a name already registered keeps its slot (the same stat).
    @discardableResult
    public func register(_ name: String, _ kind: Kind, family: String? = nil, labels: [(String, String)] = [],
                         lazy isLazy: Bool = false) -> Int {
        lock.withLock {
            // Only stats registered alone: a run's stats are never registered one by one.
            if let slot = table.slotsByName[name] { return slot }
            let slot = table.add(Table.Named(name: name, family: family.map { table.intern($0) } ?? name,
                                             labels: labels, kind: kind, lazy: isLazy, owner: table.currentOwner))
            table.slotsByName[name] = slot
            return slot
        }
    }

    /// The slot already registered under `name`, else a new one: for stats that several filters may name
    /// alike and then share, as they do in Envoy's store (RBAC filters with the same prefixes).
    @discardableResult
    public func registerOnce(_ name: String, _ kind: Kind, family: String? = nil, labels: [(String, String)] = [])
        -> Int
    {
        register(name, kind, family: family, labels: labels)
    }

    /// Runs `body`, whose registrations belong to `owner` (a cluster's `cluster.<name>`). Registrations are
    /// made one owner at a time (the caller holds the server's install lock, or runs before the server starts).
    public func owned<T>(by owner: String, _ body: () throws -> T) rethrows -> T {
        lock.withLock {
            if table.ownerIDs[owner] == nil { table.ownerIDs[owner] = Int32(table.ownerIDs.count + 1) }
            table.currentOwner = table.ownerIDs[owner]!
        }
        defer { lock.withLock { table.currentOwner = 0 } }
        return try body()
    }

    /// Leaves `owners`' stats out of what admin shows, or shows them again: a cluster removed from the config,
    /// or added back.
    public func setHidden(_ owners: Set<String>, shown: Set<String>) {
        lock.withLock {
            for o in owners { if let id = table.ownerIDs[o] { table.hiddenOwners.insert(id) } }
            for o in shown { if let id = table.ownerIDs[o] { table.hiddenOwners.remove(id) } }
        }
    }

    /// Registers `layout`'s stats under `prefix` (the owner's scope with its dot, e.g. "cluster.c1."), each with
    /// `labels` after the layout's own; returns the first one's slot (stat k is at first + k). The same prefix and
    /// layout registered again keep their slots.
    @discardableResult
    public func register(_ layout: SlotLayout, prefix: String, labels: [(String, String)] = []) -> Int {
        lock.withLock { table.add(layout, prefix: prefix, labels: labels) }
    }

    /// Makes the `count` slots from `first` (a group's) computed: `read(k)` supplies slot first + k's value when
    /// stats are shown (see `registerComputed`). Set again (the group registered again), the new `read` is used.
    public func setComputed(first: Int, count: Int, _ read: @escaping @Sendable (Int) -> Int) {
        lock.withLock {
            table.computedRuns.removeAll { $0.first == first }
            table.computedRuns.append((first, count, read))
        }
    }

    /// Registers a histogram of whole-millisecond values; returns its histogram slot for `WorkerStats.record`.
    /// A name already registered keeps its slot.
    @discardableResult
    public func registerHistogram(_ name: String, family: String? = nil, labels: [(String, String)] = [],
                                  lazy isLazy: Bool = false) -> Int {
        lock.withLock {
            if let slot = table.histogramsByName[name] { return slot }
            table.histograms.append(Histogram(name: name, family: family.map { table.intern($0) } ?? name,
                                              labels: labels, lazy: isLazy))
            table.histogramOwners.append(table.currentOwner)
            table.histogramsByName[name] = table.histograms.count - 1
            return table.histograms.count - 1
        }
    }

    /// The slot registered under `name`, if any.
    public func slot(named name: String) -> Int? { lock.withLock { table.slot(named: name) } }

    /// Registers a gauge whose value `read` supplies when stats are shown; admin renders it like any other
    /// gauge (text, JSON, Prometheus, `filter`, `usedonly`). Registered again under the same name (a cluster
    /// whose config changed), the stat reads the new `read`.
    @discardableResult
    public func registerComputed(_ name: String, kind: Kind = .gauge, family: String? = nil, labels: [(String, String)] = [],
                                 _ read: @escaping @Sendable () -> Int) -> Int {
        let slot = register(name, kind, family: family, labels: labels)
        lock.withLock { table.computed[slot] = read }
        return slot
    }

    /// The workers' summed values with every computed gauge read now: the values admin shows.
    public func resolvingComputed(_ values: [Int]) -> [Int] {
        let (computed, runs) = lock.withLock { (table.computed, table.computedRuns) }
        guard !computed.isEmpty || !runs.isEmpty else { return values }
        var out = values
        for (slot, read) in computed where slot < out.count { out[slot] = read() }
        for run in runs where run.first + run.count <= out.count {
            for k in 0..<run.count { out[run.first + k] = run.read(k) }
        }
        return out
    }
}

/// Histograms' counts by histogram slot, `HistogramLayout.stride` integers each; a histogram with no value
/// recorded is absent.
public typealias HistogramCounts = [Int: [Int]]

/// One event loop's stat values. Owned by that loop's worker; never shared across threads.
public final class WorkerStats {
    @usableFromInline package private(set) var values: UnsafeMutablePointer<Int>
    package private(set) var count: Int
    /// Each histogram's counts, `HistogramLayout.stride` integers, by histogram slot: allocated when the
    /// histogram records its first value (as Envoy makes a histogram on first use), so that a cluster that never
    /// sees a request costs no histogram memory; after that, recording never allocates.
    @usableFromInline package private(set) var histogramBlocks: UnsafeMutablePointer<UnsafeMutablePointer<Int>?>
    package private(set) var histogramCount: Int

    /// Room for every stat and histogram `registry` has now (register first).
    package convenience init(registry: StatsRegistry) {
        let table = registry.snapshot
        self.init(count: table.count, histograms: table.histograms.count)
    }

    package init(count: Int, histograms: Int) {
        self.count = count
        values = .allocate(capacity: max(count, 1))
        values.initialize(repeating: 0, count: max(count, 1))
        histogramCount = histograms
        histogramBlocks = .allocate(capacity: max(histograms, 1))
        histogramBlocks.initialize(repeating: nil, count: max(histograms, 1))
    }

    deinit {
        values.deallocate()
        for h in 0..<histogramCount { histogramBlocks[h]?.deallocate() }
        histogramBlocks.deallocate()
    }

    /// Room for stats registered since (a cluster added while the proxy runs), the values so far kept. Called on
    /// the owning loop before anything counts into the new slots: the snapshot that brings them is installed
    /// after this.
    package func grow(count newCount: Int, histograms newHistograms: Int) {
        if newCount > count {
            let grown = UnsafeMutablePointer<Int>.allocate(capacity: newCount)
            grown.initialize(from: values, count: max(count, 1))
            (grown + max(count, 1)).initialize(repeating: 0, count: newCount - max(count, 1))
            values.deallocate()
            values = grown
            count = newCount
        }
        if newHistograms > histogramCount {
            let grown = UnsafeMutablePointer<UnsafeMutablePointer<Int>?>.allocate(capacity: newHistograms)
            grown.initialize(from: histogramBlocks, count: histogramCount)
            (grown + histogramCount).initialize(repeating: nil, count: newHistograms - histogramCount)
            histogramBlocks.deallocate()
            histogramBlocks = grown
            histogramCount = newHistograms
        }
    }

    /// Grows to what `registry` has now.
    package func grow(to registry: StatsRegistry) {
        let table = registry.snapshot
        grow(count: table.count, histograms: table.histograms.count)
    }

    /// Records a value in ms into histogram slot `histogram`.
    @inlinable @inline(__always) package func record(_ histogram: Int, milliseconds v: Int) {
        let h = histogramBlocks[histogram] ?? block(histogram)
        h[HistogramLayout.bucket(v)] &+= 1
        h[HistogramLayout.sumIndex] &+= v
        h[HistogramLayout.binsOffset &+ HistogramLayout.bin(v)] &+= 1
    }

    /// Records the whole milliseconds from `start` to `end`, truncated as Envoy truncates its timings.
    @inlinable @inline(__always) package func record(_ histogram: Int, from start: NIODeadline, to end: NIODeadline) {
        let ns = end.uptimeNanoseconds &- start.uptimeNanoseconds
        record(histogram, milliseconds: end < start ? 0 : Int(ns / 1_000_000))
    }

    /// The first value of `histogram`: its block, made now.
    @usableFromInline @inline(never) package func block(_ histogram: Int) -> UnsafeMutablePointer<Int> {
        let made = UnsafeMutablePointer<Int>.allocate(capacity: HistogramLayout.stride)
        made.initialize(repeating: 0, count: HistogramLayout.stride)
        histogramBlocks[histogram] = made
        return made
    }

    /// A copy of the counts of every histogram that has recorded a value, for admin to merge with the other
    /// workers'.
    package func histogramSnapshot() -> HistogramCounts {
        var out: HistogramCounts = [:]
        for h in 0..<histogramCount {
            if let b = histogramBlocks[h] { out[h] = Array(UnsafeBufferPointer(start: b, count: HistogramLayout.stride)) }
        }
        return out
    }

    // Counted per request from every target: inlinable, or each count is a call across the module boundary
    // (`@inline(__always)` alone does not cross it; package declarations get no cross-module optimisation).
    @inlinable @inline(__always) package func inc(_ slot: Int) { values[slot] &+= 1 }
    @inlinable @inline(__always) package func dec(_ slot: Int) { values[slot] &-= 1 }
    @inlinable @inline(__always) package func add(_ slot: Int, _ n: Int) { values[slot] &+= n }

    package func snapshot() -> [Int] { Array(UnsafeBufferPointer(start: values, count: count)) }

    /// `/reset_counters`: gauges keep their values.
    package func resetCounters(_ kinds: [StatsRegistry.Kind]) {
        for i in 0..<min(count, kinds.count) where kinds[i] == .counter { values[i] = 0 }
    }
}

@available(*, unavailable) extension WorkerStats: Sendable {}
