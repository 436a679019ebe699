import SidecarCore

/// The `/stats` renderings: Envoy's text form, JSON, and Prometheus.
struct StatsView {
    /// One stat as shown: the registry's slots and the dynamic counters alike.
    struct Row {
        var name: String
        var value: Int
        var isCounter: Bool
        var family: String
        var labels: [(String, String)]
    }

    let rows: [Row]

    /// `values` are the workers' sums; computed gauges are read here, once per rendering.
    init(registry: StatsRegistry, values: [Int], filter: CompiledRegex?, usedOnly: Bool) {
        let values = registry.resolvingComputed(values)
        var rows: [Row] = []
        for i in 0..<registry.count {
            if registry.lazy[i] && values[i] == 0 { continue }
            rows.append(Row(name: registry.names[i], value: values[i], isCounter: registry.kinds[i] == .counter,
                            family: registry.prometheus[i].family, labels: registry.prometheus[i].labels))
        }
        for (name, c) in registry.dynamic.snapshot() {
            rows.append(Row(name: name, value: c.value, isCounter: true, family: c.family, labels: c.labels))
        }
        self.rows = rows.filter { r in
            if usedOnly && r.value == 0 { return false }
            if let filter, !filter.partialMatch(r.name) { return false }
            return true
        }.sorted { $0.name < $1.name }
    }

    func text() -> String {
        var out = ""
        for r in rows { out += "\(r.name): \(r.value)\n" }
        return out
    }

    func json() -> String {
        let items = rows.map { "{\"name\":\"\($0.name)\",\"value\":\($0.value)}" }
        return "{\"stats\":[" + items.joined(separator: ",") + "]}\n"
    }

    func prometheus() -> String {
        var byFamily: [String: [Row]] = [:]
        for r in rows { byFamily[r.family, default: []].append(r) }
        var out = ""
        for fam in byFamily.keys.sorted() {
            let metric = "envoy_" + fam.map { $0.isLetter || $0.isNumber ? $0 : "_" }.map(String.init).joined()
            let members = byFamily[fam]!
            out += "# TYPE \(metric) \(members[0].isCounter ? "counter" : "gauge")\n"
            for r in members {
                let labels = r.labels.map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ",")
                out += "\(metric){\(labels)} \(r.value)\n"
            }
        }
        return out
    }
}
