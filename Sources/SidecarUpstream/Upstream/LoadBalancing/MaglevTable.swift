import SidecarCore

/// The lookup table of `MAGLEV` (Google's Maglev paper, section 3.4, as Envoy builds it in
/// `maglev/maglev_lb.cc`), built the same way so a request hash selects the same endpoint as behind Envoy:
///
/// - hosts are ordered by hash key, so the table does not depend on the order the hosts arrived in;
/// - each host walks its own permutation of the slots, `(offset + skip * n) % M`, with
///   `offset = xxHash64(key) % M` and `skip = xxHash64(key, seed 1) % (M - 1) + 1`;
/// - hosts take turns claiming their next free slot until all `M` slots are owned; a host of weight `w`
///   takes its turn in only `w / maxWeight` of the rounds, so slots are shared in proportion to weight.
///
/// `M` must be prime (Envoy rejects other `table_size`s): only then does every permutation visit every slot.
/// Removing one host leaves most other hosts' slots where they were, so few keys move.
package struct MaglevTable: Sendable {
    /// Envoy's default `table_size`, the paper's recommendation.
    package static let defaultSize = 65537

    /// The host (index into the keys the table was built from) owning each slot.
    package private(set) var slots: [Int32] = []

    /// An empty table: selects nothing.
    package init() {}

    /// - Parameters:
    ///   - keys: each host's hash key (`UpstreamHost.hashKey`), in host order.
    ///   - weights: each host's load-balancing weight (Envoy requires at least 1; 0 is taken as 1).
    ///   - size: the table size; must be prime.
    package init(keys: [String], weights: [UInt32], size: Int) {
        precondition(keys.count == weights.count)
        precondition(Self.isPrime(size), "Maglev table size must be prime")
        guard !keys.isEmpty else { return }
        let tableSize = UInt64(size)
        let sum = weights.reduce(0.0) { $0 + Double(max($1, 1)) }
        let normalized = weights.map { Double(max($0, 1)) / sum }
        let maxWeight = normalized.max() ?? 1

        struct Builder {
            let host: Int32
            let offset: UInt64
            let skip: UInt64
            let weight: Double
            var target = 0.0
            var next: UInt64 = 0
        }
        let order = keys.indices.sorted { a, b in
            let ka = keys[a].utf8
            let kb = keys[b].utf8
            if ka.elementsEqual(kb) { return a < b }
            return ka.lexicographicallyPrecedes(kb)
        }
        var builders = order.map { i in
            Builder(
                host: Int32(i),
                offset: XXHash64.hash(keys[i]) % tableSize,
                skip: XXHash64.hash(keys[i], seed: 1) % (tableSize - 1) + 1,
                weight: normalized[i])
        }

        var table = [Int32](repeating: -1, count: size)
        var filled = 0
        var round = 1.0
        while filled < size {
            for b in builders.indices where filled < size {
                // A host of the heaviest weight claims a slot every round; one of a third of that weight,
                // every third round.
                if round * builders[b].weight < builders[b].target { continue }
                builders[b].target += maxWeight
                var slot = Int((builders[b].offset &+ builders[b].skip &* builders[b].next) % tableSize)
                while table[slot] >= 0 {
                    builders[b].next += 1
                    slot = Int((builders[b].offset &+ builders[b].skip &* builders[b].next) % tableSize)
                }
                table[slot] = builders[b].host
                builders[b].next += 1
                filled += 1
            }
            round += 1
        }
        slots = table
    }

    package var size: Int { slots.count }

    /// The host for `hash`. A retry host predicate asks again with `attempt` 1, 2, …: Envoy then flips most
    /// bits of the hash (`hash ^ (2^64 - attempt)`) so successive attempts land far apart in the table.
    package func host(for hash: UInt64, attempt: Int = 0) -> Int? {
        guard !slots.isEmpty else { return nil }
        var h = hash
        if attempt > 0 { h ^= 0 &- UInt64(attempt) }
        return Int(slots[Int(h % UInt64(slots.count))])
    }

    /// How many slots each host owns (Envoy's `maglev_lb.min/max_entries_per_host` come from this).
    package func entriesPerHost(count: Int) -> [Int] {
        var out = Array(repeating: 0, count: count)
        for s in slots where Int(s) < count { out[Int(s)] += 1 }
        return out
    }

    /// Whether `n` can be a Maglev table size. Config decoding should refuse other sizes, as Envoy does.
    package static func isPrime(_ n: Int) -> Bool {
        if n < 2 { return false }
        if n < 4 { return true }
        if n % 2 == 0 { return false }
        var d = 3
        while d * d <= n {
            if n % d == 0 { return false }
            d += 2
        }
        return true
    }
}
