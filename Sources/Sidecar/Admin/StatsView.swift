/// The `/stats` renderings: Envoy's text form, JSON, and Prometheus.
struct StatsView {
    let registry: StatsRegistry
    let values: [Int]
    let filter: CompiledRegex?
    let usedOnly: Bool

    /// `values` are the workers' sums; computed gauges are read here, once per rendering.
    init(registry: StatsRegistry, values: [Int], filter: CompiledRegex?, usedOnly: Bool) {
        self.registry = registry
        self.values = registry.resolvingComputed(values)
        self.filter = filter
        self.usedOnly = usedOnly
    }

    private var visible: [Int] {
        (0..<registry.count).filter { i in
            if registry.lazy[i] && values[i] == 0 { return false }
            if usedOnly && values[i] == 0 { return false }
            if let filter, !filter.partialMatch(registry.names[i]) { return false }
            return true
        }.sorted { registry.names[$0] < registry.names[$1] }
    }

    func text() -> String {
        var out = ""
        for i in visible { out += "\(registry.names[i]): \(values[i])\n" }
        return out
    }

    func json() -> String {
        let items = visible.map { "{\"name\":\"\(registry.names[$0])\",\"value\":\(values[$0])}" }
        return "{\"stats\":[" + items.joined(separator: ",") + "]}\n"
    }

    func prometheus() -> String {
        var byFamily: [String: [Int]] = [:]
        var order: [String] = []
        for i in visible {
            let fam = registry.prometheus[i].family
            if byFamily[fam] == nil { order.append(fam) }
            byFamily[fam, default: []].append(i)
        }
        var out = ""
        for fam in order.sorted() {
            let metric = "envoy_" + fam.map { $0.isLetter || $0.isNumber ? $0 : "_" }.map(String.init).joined()
            let idx = byFamily[fam]!
            out += "# TYPE \(metric) \(registry.kinds[idx[0]] == .counter ? "counter" : "gauge")\n"
            for i in idx {
                let labels = registry.prometheus[i].labels.map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ",")
                out += "\(metric){\(labels)} \(values[i])\n"
            }
        }
        return out
    }
}
