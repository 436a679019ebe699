import NIOCore
import NIOHTTP1

/// The hash a route's `hash_policy` gives a request, for RING_HASH and MAGLEV clusters (Envoy's
/// `HashPolicyImpl::generateHash`): each policy that finds its key contributes xxHash64 of it, combined as
/// `rotl(hash, 1) ^ next`; a `terminal` policy that produced a hash ends the walk. nil: no key found, so the
/// balancer picks at random.
package enum RequestHash {
    package static func compute(_ policies: [HashPolicy], headers: HTTPHeaders, path: String,
                        source: SocketAddress?) -> UInt64? {
        var hash: UInt64?
        for policy in policies {
            var next: UInt64?
            switch policy.source {
            case .header(let name):
                let values = headers[name]
                if values.count == 1 {
                    next = XXHash64.hash(Array(values[0].utf8))
                } else if values.count > 1 {
                    // Envoy hashes every value of a repeated header, sorted, so order does not matter.
                    next = XXHash64.hash(Array(values.sorted().joined().utf8))
                }
            case .cookie(let name):
                if let value = cookie(name, in: headers) { next = XXHash64.hash(Array(value.utf8)) }
            case .sourceIP:
                if let ip = source?.ipAddress { next = XXHash64.hash(Array(ip.utf8)) }
            case .queryParameter(let name):
                if let value = queryParameter(name, in: path) { next = XXHash64.hash(Array(value.utf8)) }
            }
            if let n = next {
                hash = hash.map { (($0 << 1) | ($0 >> 63)) ^ n } ?? n
            }
            if policy.terminal && hash != nil { break }
        }
        return hash
    }

    package static func cookie(_ name: String, in headers: HTTPHeaders) -> String? {
        for line in headers["cookie"] {
            for pair in line.split(separator: ";") {
                let trimmed = pair.drop(while: { $0 == " " })
                guard let eq = trimmed.firstIndex(of: "=") else { continue }
                if trimmed[..<eq] == name[...] {
                    var value = trimmed[trimmed.index(after: eq)...]
                    if value.count >= 2, value.first == "\"", value.last == "\"" { value = value.dropFirst().dropLast() }
                    return String(value)
                }
            }
        }
        return nil
    }

    package static func queryParameter(_ name: String, in path: String) -> String? {
        guard let q = path.firstIndex(of: "?") else { return nil }
        for pair in path[path.index(after: q)...].split(separator: "&") {
            if let eq = pair.firstIndex(of: "=") {
                if pair[..<eq] == name[...] { return String(pair[pair.index(after: eq)...]) }
            } else if pair == name[...] {
                return ""
            }
        }
        return nil
    }
}
