import NIOConcurrencyHelpers

/// Counters whose names come from requests, created when first counted, as Envoy creates them lazily (the fault
/// filter's `http.<prefix>.fault.<downstream cluster>.*`). Their names cannot be fixed at start-up like the registry's
/// slots, so they live in one locked table; only requests that name such a counter touch it.
public final class DynamicStats: Sendable {
    package struct Counter {
        package var family: String
        package var labels: [(String, String)]
        package var value: Int
    }

    private let counters = NIOLockedValueBox<[String: Counter]>([:])

    public init() {}

    package func add(_ name: String, family: String, labels: [(String, String)], _ n: Int = 1) {
        counters.withLockedValue { table in
            if table[name] == nil {
                table[name] = Counter(family: family, labels: labels, value: n)
            } else {
                table[name]!.value &+= n
            }
        }
    }

    /// Several counters under one lock (a stream's worth of them).
    package func add(_ entries: [(name: String, family: String, labels: [(String, String)], n: Int)]) {
        guard !entries.isEmpty else { return }
        counters.withLockedValue { table in
            for e in entries {
                if table[e.name] == nil {
                    table[e.name] = Counter(family: e.family, labels: e.labels, value: e.n)
                } else {
                    table[e.name]!.value &+= e.n
                }
            }
        }
    }

    package func snapshot() -> [(name: String, counter: Counter)] {
        counters.withLockedValue { table in table.map { ($0.key, $0.value) } }
    }

    /// admin `/reset_counters`.
    package func reset() {
        counters.withLockedValue { table in
            for k in table.keys { table[k]!.value = 0 }
        }
    }
}
