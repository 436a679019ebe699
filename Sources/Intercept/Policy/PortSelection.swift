/// A set of TCP ports given as `*` (every port) or a comma-separated list.
public enum PortSelection: Equatable, Sendable {
    case all
    case only([UInt16])

    public static let none = PortSelection.only([])

    public var ports: [UInt16] {
        switch self {
        case .all: return []
        case .only(let p): return p
        }
    }

    /// Parses `*`, an empty string (no ports) or `P,P,...`. `setting` names the flag in errors.
    public init(parsing text: String, setting: String, allowAll: Bool = true) throws(PolicyError) {
        let t = text.trimmingWhitespace()
        if t == "*" {
            guard allowAll else { throw PolicyError("\(setting): '*' is not allowed here; list the ports") }
            self = .all
            return
        }
        self = .only(try PortSelection.parseList(t, setting: setting))
    }

    static func parseList(_ text: String, setting: String) throws(PolicyError) -> [UInt16] {
        var out: [UInt16] = []
        for raw in text.split(separator: ",") {
            let item = String(raw).trimmingWhitespace()
            if item.isEmpty { continue }
            if item == "*" { throw PolicyError("\(setting): '*' cannot be combined with other ports in '\(text)'") }
            out.append(try parsePort(item, setting: setting))
        }
        var seen = Set<UInt16>()
        return out.filter { seen.insert($0).inserted }
    }

    public static func parsePort(_ item: String, setting: String) throws(PolicyError) -> UInt16 {
        guard !item.isEmpty, item.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw PolicyError("\(setting): '\(item)' is not a port number")
        }
        guard let v = Int(item), (1...65535).contains(v) else {
            throw PolicyError("\(setting): port \(item) is out of range; ports are 1 to 65535")
        }
        return UInt16(v)
    }
}
