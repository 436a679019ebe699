import NIOHTTP1
import SidecarCore

extension HTTPHeaders {
    /// Envoy's `setReference…`: the header gets this one value where it already stands (or at the end when it is
    /// new). NIO's `replaceOrAdd` moves it to the end, which changes the order clients see.
    mutating func setKeepingPosition(name: String, value: String) {
        var count = 0
        var same = true
        var last = -1
        var position = 0
        for (n, v) in self {
            if equalsIgnoringASCIICase(n, name) {
                count += 1
                if v != value { same = false }
                last = position
            }
            position += 1
        }
        if count == 0 {
            add(name: name, value: value)
            return
        }
        if count == 1 && same { return }
        // The one occurrence is the last header (a request id the connection manager just added): removing it
        // and adding it again keeps the order without rebuilding the headers.
        if count == 1 && last == position - 1 {
            remove(name: name)
            add(name: name, value: value)
            return
        }
        var rebuilt = HTTPHeaders()
        rebuilt.reserveCapacity(self.count)
        var placed = false
        for (n, v) in self {
            if equalsIgnoringASCIICase(n, name) {
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
