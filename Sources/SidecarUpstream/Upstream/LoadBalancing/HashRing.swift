import SidecarCore

/// The ring of `RING_HASH` (Envoy's ketama-style ring, `ring_hash/ring_hash_lb.cc`), built exactly as Envoy
/// builds it so that a request hash selects the same endpoint here as behind Envoy:
///
/// - weights are normalised to sum to 1; the ring gets `scale = min(ceil(minW * minimum) / minW, maximum)`
///   entries (rounded up), so the lightest host gets a whole number of entries and the ring stays within
///   `minimum_ring_size ... maximum_ring_size`;
/// - walking the hosts in order, each adds entries while a running count stays below the running target
///   `sum(scale * w)`; entry `n` of a host sits at `xxHash64("<address>_<n>")`;
/// - a hash selects the first entry at or after it, wrapping to the first entry past the top.
///
/// Because positions depend only on each host's own key, removing one host of N moves only the keys that
/// were on it (about 1/N of them); everything else stays where it was.
package struct HashRing: Sendable {
    /// Entry positions, ascending.
    package private(set) var positions: [UInt64] = []
    /// The host (index into the keys the ring was built from) at each position.
    package private(set) var owners: [Int32] = []

    /// An empty ring: selects nothing.
    package init() {}

    /// - Parameters:
    ///   - keys: each host's hash key (`UpstreamHost.hashKey`), in host order.
    ///   - weights: each host's load-balancing weight (Envoy requires at least 1; 0 is taken as 1).
    package init(keys: [String], weights: [UInt32], minimumSize: Int, maximumSize: Int) {
        precondition(keys.count == weights.count)
        guard !keys.isEmpty else { return }
        let sum = weights.reduce(0.0) { $0 + Double(max($1, 1)) }
        let normalized = weights.map { Double(max($0, 1)) / sum }
        let minWeight = normalized.min() ?? 1
        let minimum = Double(max(minimumSize, 1))
        let maximum = Double(max(maximumSize, 1))
        let scale = min((minWeight * minimum).rounded(.up) / minWeight, maximum)

        var entries: [(position: UInt64, owner: Int32)] = []
        entries.reserveCapacity(Int(scale.rounded(.up)))
        var current = 0.0
        var target = 0.0
        var buffer: [UInt8] = []
        for (host, key) in keys.enumerated() {
            buffer.removeAll(keepingCapacity: true)
            buffer.append(contentsOf: key.utf8)
            buffer.append(UInt8(ascii: "_"))
            let prefix = buffer.count
            target += scale * normalized[host]
            var n = 0
            while current < target {
                buffer.removeSubrange(prefix...)
                buffer.append(contentsOf: String(n).utf8)
                entries.append((XXHash64.hash(buffer), Int32(host)))
                n += 1
                current += 1
            }
        }
        // Envoy sorts by position only; equal positions (a 64-bit collision) keep build order here so the
        // ring is deterministic.
        entries = entries.enumerated()
            .sorted { ($0.element.position, $0.offset) < ($1.element.position, $1.offset) }
            .map(\.element)
        positions = entries.map(\.position)
        owners = entries.map(\.owner)
    }

    package var size: Int { positions.count }

    /// The host for `hash`. A retry host predicate asks again with `attempt` 1, 2, …: Envoy then steps that
    /// many entries further round the ring (which may land on the same host again; Envoy accepts that).
    package func host(for hash: UInt64, attempt: Int = 0) -> Int? {
        entry(for: hash, attempt: attempt).map { Int(owners[$0]) }
    }

    /// The index (into `positions` and `owners`) of the entry `hash` selects: the first at or after it,
    /// wrapping, then `attempt` entries further.
    package func entry(for hash: UInt64, attempt: Int = 0) -> Int? {
        guard !positions.isEmpty else { return nil }
        var low = 0
        var high = positions.count
        while low < high {
            let mid = (low + high) / 2
            if positions[mid] < hash { low = mid + 1 } else { high = mid }
        }
        let first = low == positions.count ? 0 : low
        return attempt > 0 ? (first + attempt) % positions.count : first
    }

    /// How many entries each host got (Envoy's `ring_hash_lb.min/max_hashes_per_host` come from this).
    package func entriesPerHost(count: Int) -> [Int] {
        var out = Array(repeating: 0, count: count)
        for o in owners where Int(o) < count { out[Int(o)] += 1 }
        return out
    }
}
