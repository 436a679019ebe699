import Foundation

/// The xDS protocol's state on one aggregated (ADS) stream, as Envoy's xds_protocol document describes it, in its
/// state-of-the-world form or (`delta`) its incremental one, and nothing else: per resource type, the names
/// subscribed, the version accepted last (per resource, in delta) and the nonce of the last response; from them,
/// the requests to send. The client translates: it sends what this returns and feeds back what the control plane
/// answers.
struct ADSState {
    /// A request of either form: a state-of-the-world one uses `versionInfo` and `resourceNames`, a delta one
    /// `subscribe`, `unsubscribe` and `initialResourceVersions`.
    struct Request: Equatable {
        var typeURL: String
        var versionInfo: String
        var resourceNames: [String]
        var responseNonce: String
        /// Set on a NACK: why the response was refused.
        var errorDetail: String?
        var includeNode: Bool
        var subscribe: [String] = []
        var unsubscribe: [String] = []
        /// Delta, first request of a stream: the resources the proxy has, by name, with their versions.
        var initialResourceVersions: [String: String] = [:]
    }

    struct TypeState {
        /// CDS (and LDS) subscribe to every resource: no names.
        var wildcard: Bool
        var names: Set<String> = []
        /// The version accepted last; kept across streams, so a new stream says what the proxy has.
        var versionInfo = ""
        /// The nonce of the last response on this stream.
        var nonce = ""
        /// A request went out on this stream.
        var requested = false
        /// A response was handled, on any stream: the type's first fetch is over.
        var received = false
        /// Delta: the version of each resource the proxy holds (kept across streams).
        var resourceVersions: [String: String] = [:]
        /// Delta: the names this stream has subscribed to.
        var subscribedOnStream: Set<String> = []

        var wanted: Bool { wildcard || !names.isEmpty }
    }

    /// The types in the order Envoy sends them (CDS, EDS, LDS, RDS).
    let order: [String]
    private(set) var types: [String: TypeState]
    private let nodeOnFirstMessageOnly: Bool
    /// The incremental (delta) protocol: `DeltaAggregatedResources`.
    let delta: Bool
    private var nodeSent = false
    private(set) var streaming = false

    init(types: [(typeURL: String, wildcard: Bool)], nodeOnFirstMessageOnly: Bool, delta: Bool = false) {
        order = types.map(\.typeURL)
        self.types = Dictionary(uniqueKeysWithValues: types.map { ($0.typeURL, TypeState(wildcard: $0.wildcard)) })
        self.nodeOnFirstMessageOnly = nodeOnFirstMessageOnly
        self.delta = delta
    }

    /// A stream opened: a request for every type that has something to ask for, with the versions the proxy has
    /// (the control plane need not resend what it has) and no nonce.
    mutating func streamStarted() -> [Request] {
        streaming = true
        nodeSent = false
        var out: [Request] = []
        for url in order {
            types[url]!.nonce = ""
            types[url]!.requested = false
            types[url]!.subscribedOnStream = []
            guard types[url]!.wanted else { continue }
            guard delta else {
                out.append(request(url, error: nil))
                continue
            }
            // Delta: a wildcard type subscribes with an empty list (the legacy wildcard form Envoy sends); a named
            // one with its names. Either way, with the versions of what the proxy holds, so that the control plane
            // sends only what changed while the stream was down.
            var r = request(url, error: nil)
            let t = types[url]!
            r.subscribe = t.wildcard ? [] : t.names.sorted()
            r.initialResourceVersions = t.wildcard ? t.resourceVersions
                : t.resourceVersions.filter { t.names.contains($0.key) }
            types[url]!.subscribedOnStream = t.names
            out.append(r)
        }
        return out
    }

    mutating func streamEnded() {
        streaming = false
    }

    /// A response was handled: the ACK (its version is now the type's) or, with `error`, the NACK (the version
    /// stays the last accepted one) that answers it.
    ///
    /// Delta: `updated` are the response's resources with their versions and `removed` its removed_resources;
    /// an accepted response updates the versions the proxy holds. Its ACK or NACK carries only the nonce (and
    /// the error).
    mutating func responded(typeURL: String, versionInfo: String, nonce: String, error: String?,
                            updated: [(name: String, version: String)] = [], removed: [String] = []) -> Request? {
        guard types[typeURL] != nil else { return nil }
        types[typeURL]!.nonce = nonce
        types[typeURL]!.received = true
        if error == nil {
            types[typeURL]!.versionInfo = versionInfo
            for (name, version) in updated { types[typeURL]!.resourceVersions[name] = version }
            for name in removed { types[typeURL]!.resourceVersions[name] = nil }
        }
        return request(typeURL, error: error)
    }

    /// The names wanted for a type changed: the request that says so, when a stream is up and they differ.
    mutating func namesChanged(typeURL: String, to names: Set<String>) -> Request? {
        guard var t = types[typeURL], !t.wildcard, t.names != names else { return nil }
        t.names = names
        if delta {
            // What is no longer wanted is dropped: a later subscription to it starts afresh.
            t.resourceVersions = t.resourceVersions.filter { names.contains($0.key) }
        }
        types[typeURL] = t
        guard streaming else { return nil }
        guard delta else {
            // An empty list would read as a wildcard subscription: the last names stay subscribed instead.
            guard !names.isEmpty else { return nil }
            return request(typeURL, error: nil)
        }
        // Delta: the difference, on a request without a nonce (it answers no response). Before the type's first
        // request on this stream, this request is its first.
        let before = t.subscribedOnStream
        var r = request(typeURL, error: nil)
        r.responseNonce = ""
        r.subscribe = names.subtracting(before).sorted()
        r.unsubscribe = before.subtracting(names).sorted()
        types[typeURL]!.subscribedOnStream = names
        return r.subscribe.isEmpty && r.unsubscribe.isEmpty ? nil : r
    }

    /// Seconds to wait before the next stream after `attempt` failed ones in a row (0 after a stream that
    /// delivered): Envoy's jittered exponential back-off, a random wait below min(500 ms × 2^attempt, 30 s), at
    /// least 50 ms. `draw` is uniform in [0, 1).
    static func backoff(attempt: Int, draw: Double) -> Double {
        let ceiling = min(0.5 * pow(2, Double(min(max(attempt, 0), 10))), 30)
        return max(0.05, draw * ceiling)
    }

    /// Every wanted type has had its first response.
    var initialFetchDone: Bool {
        order.allSatisfy { url in !types[url]!.wanted || types[url]!.received }
    }

    private mutating func request(_ typeURL: String, error: String?) -> Request {
        types[typeURL]!.requested = true
        let t = types[typeURL]!
        let node = !nodeOnFirstMessageOnly || !nodeSent
        nodeSent = true
        return Request(typeURL: typeURL, versionInfo: t.versionInfo, resourceNames: t.names.sorted(),
                       responseNonce: t.nonce, errorDetail: error, includeNode: node)
    }
}
