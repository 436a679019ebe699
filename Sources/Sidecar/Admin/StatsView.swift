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

    /// One histogram as shown: Envoy prints histograms after the counters and gauges in every form.
    struct HistogramRow {
        var name: String
        var family: String
        var labels: [(String, String)]
        var cumulative: HistogramStatistics
        /// The last complete flush interval; nil before the first flush.
        var interval: HistogramStatistics?
    }

    let rows: [Row]
    let histogramRows: [HistogramRow]

    /// `values` are the workers' sums; computed gauges are read here, once per rendering. `histograms`: the
    /// merged histogram counts (none: the registry's histograms are left out).
    init(registry: StatsRegistry, values: [Int], histograms: HistogramsView? = nil, filter: CompiledRegex?,
         usedOnly: Bool) {
        let values = registry.resolvingComputed(values)
        // Read once: clusters that arrive meanwhile (CDS) add stats; those the values do not cover yet show next
        // time.
        let table = registry.snapshot
        var rows: [Row] = []
        for i in 0..<min(table.count, values.count) {
            if values[i] == 0 && table.isLazy(i) { continue }
            if !table.shows(i) { continue }
            let (family, labels) = table.family(i)
            rows.append(Row(name: table.name(i), value: values[i], isCounter: table.kind(i) == .counter,
                            family: family, labels: labels))
        }
        for (name, c) in registry.dynamic.snapshot() {
            rows.append(Row(name: name, value: c.value, isCounter: true, family: c.family, labels: c.labels))
        }
        self.rows = rows.filter { r in
            if usedOnly && r.value == 0 { return false }
            if let filter, !filter.partialMatch(r.name) { return false }
            return true
        }.sorted { $0.name < $1.name }

        var histogramRows: [HistogramRow] = []
        if let histograms {
            for (h, info) in table.histograms.enumerated() {
                if let filter, !filter.partialMatch(info.name) { continue }
                if !table.showsHistogram(h) { continue }
                let cumulative = histograms.cumulative[h].map { HistogramStatistics($0) } ?? .empty
                if cumulative.count == 0 && (usedOnly || info.lazy) { continue }
                let interval = histograms.interval.map { $0[h].map { HistogramStatistics($0) } ?? .empty }
                histogramRows.append(HistogramRow(name: info.name, family: info.family, labels: info.labels,
                                                  cumulative: cumulative, interval: interval))
            }
        }
        self.histogramRows = histogramRows.sorted { $0.name < $1.name }
    }

    func text() -> String {
        var out = ""
        for r in rows { out += "\(r.name): \(r.value)\n" }
        for h in histogramRows { out += "\(h.name): \(Self.quantileSummary(h))\n" }
        return out
    }

    /// Envoy's text form of a histogram: `P0(interval,cumulative) P25(…) … P100(…)`, `nan` for a part with no
    /// values, or `No recorded values` when nothing was ever recorded.
    static func quantileSummary(_ h: HistogramRow) -> String {
        guard h.cumulative.count > 0 else { return "No recorded values" }
        var parts: [String] = []
        for (i, q) in HistogramStatistics.quantiles.enumerated() {
            let interval = h.interval.flatMap { $0.count > 0 ? number($0.computedQuantiles[i]) : nil } ?? "nan"
            parts.append("P\(number(q * 100))(\(interval),\(number(h.cumulative.computedQuantiles[i])))")
        }
        return parts.joined(separator: " ")
    }

    /// A number as Envoy prints a double: shortest round-trip form, no trailing `.0`.
    static func number(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    func json() -> String {
        var items = rows.map { "{\"name\":\"\($0.name)\",\"value\":\($0.value)}" }
        if !histogramRows.isEmpty { items.append(histogramsJSON()) }
        return "{\"stats\":[" + items.joined(separator: ",") + "]}\n"
    }

    /// Envoy's `{"histograms":{"supported_quantiles":[…],"computed_quantiles":[…]}}`, the last element of `stats`;
    /// `null` where a quantile has no values.
    private func histogramsJSON() -> String {
        let supported = HistogramStatistics.quantiles.map { Self.number($0 * 100) }.joined(separator: ",")
        let computed = histogramRows.map { h in
            let values = HistogramStatistics.quantiles.indices.map { i in
                let c = h.cumulative.count > 0 ? Self.number(h.cumulative.computedQuantiles[i]) : "null"
                let iv = h.interval.flatMap { $0.count > 0 ? Self.number($0.computedQuantiles[i]) : nil } ?? "null"
                return "{\"cumulative\":\(c),\"interval\":\(iv)}"
            }
            return "{\"name\":\"\(JSONText.escape(h.name))\",\"values\":[" + values.joined(separator: ",") + "]}"
        }
        return "{\"histograms\":{\"supported_quantiles\":[\(supported)],\"computed_quantiles\":["
            + computed.joined(separator: ",") + "]}}"
    }

    /// Prometheus text format 0.0.4, families as Envoy prints them: counters and gauges sorted by family, then
    /// histograms (`_bucket` per Envoy bound and `+Inf`, `_sum`, `_count`). Envoy prints only `# TYPE`; we also
    /// print a `# HELP` line naming the Envoy stat (a comment to any parser, so every scraper of Envoy reads
    /// us; `prometheus_client` and Prometheus take it as the family's help text).
    func prometheus() -> String {
        var byFamily: [String: [Row]] = [:]
        for r in rows { byFamily[r.family, default: []].append(r) }
        var out = ""
        for fam in byFamily.keys.sorted() {
            let metric = Self.metricName(fam)
            let members = byFamily[fam]!
            out += "# HELP \(metric) Envoy stat \(fam)\n"
            out += "# TYPE \(metric) \(members[0].isCounter ? "counter" : "gauge")\n"
            for r in members {
                out += "\(metric){\(Self.labelText(r.labels))} \(r.value)\n"
            }
        }
        var histogramFamilies: [String: [HistogramRow]] = [:]
        for h in histogramRows { histogramFamilies[h.family, default: []].append(h) }
        for fam in histogramFamilies.keys.sorted() {
            let metric = Self.metricName(fam)
            out += "# HELP \(metric) Envoy histogram \(fam) (ms)\n"
            out += "# TYPE \(metric) histogram\n"
            for h in histogramFamilies[fam]! {
                let labels = Self.labelText(h.labels)
                let prefix = labels.isEmpty ? "" : labels + ","
                for (bound, n) in zip(HistogramLayout.bounds, h.cumulative.cumulativeBuckets) {
                    out += "\(metric)_bucket{\(prefix)le=\"\(Self.number(bound))\"} \(n)\n"
                }
                out += "\(metric)_bucket{\(prefix)le=\"+Inf\"} \(h.cumulative.count)\n"
                out += "\(metric)_sum{\(labels)} \(h.cumulative.sum)\n"
                out += "\(metric)_count{\(labels)} \(h.cumulative.count)\n"
            }
        }
        return out
    }

    private static func metricName(_ family: String) -> String {
        "envoy_" + family.map { $0.isLetter || $0.isNumber ? $0 : "_" }.map(String.init).joined()
    }

    private static func labelText(_ labels: [(String, String)]) -> String {
        labels.map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ",")
    }
}
