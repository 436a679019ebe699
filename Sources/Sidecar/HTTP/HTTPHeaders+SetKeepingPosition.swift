import NIOHTTP1

extension HTTPHeaders {
    /// Envoy's `setReference…`: the header gets this one value where it already stands (or at the end when it is
    /// new). NIO's `replaceOrAdd` moves it to the end, which changes the order clients see.
    mutating func setKeepingPosition(name: String, value: String) {
        var count = 0
        var same = true
        for v in self[name] {
            count += 1
            if v != value { same = false }
        }
        if count == 0 {
            add(name: name, value: value)
            return
        }
        if count == 1 && same { return }
        var rebuilt = HTTPHeaders()
        rebuilt.reserveCapacity(self.count)
        var placed = false
        for (n, v) in self {
            if n.lowercased() == name.lowercased() {
                if !placed {
                    rebuilt.add(name: n, value: value)
                    placed = true
                }
            } else {
                rebuilt.add(name: n, value: v)
            }
        }
        self = rebuilt
    }
}
