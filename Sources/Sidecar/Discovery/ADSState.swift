/// The xDS protocol's state on one aggregated (ADS) stream, state of the world, as Envoy's xds_protocol document
/// describes it, and nothing else: per resource type, the names subscribed, the version accepted last and the
/// nonce of the last response; from them, the requests to send. The client translates: it sends what this returns
/// and feeds back what the control plane answers.
struct ADSState {
    struct Request: Equatable {
        var typeURL: String
        var versionInfo: String
        var resourceNames: [String]
        var responseNonce: String
        /// Set on a NACK: why the response was refused.
        var errorDetail: String?
        var includeNode: Bool
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

        var wanted: Bool { wildcard || !names.isEmpty }
    }

    /// The types in the order Envoy sends them (CDS, EDS, LDS, RDS).
    let order: [String]
    private(set) var types: [String: TypeState]
    private let nodeOnFirstMessageOnly: Bool
    private var nodeSent = false
    private(set) var streaming = false

    init(types: [(typeURL: String, wildcard: Bool)], nodeOnFirstMessageOnly: Bool) {
        order = types.map(\.typeURL)
        self.types = Dictionary(uniqueKeysWithValues: types.map { ($0.typeURL, TypeState(wildcard: $0.wildcard)) })
        self.nodeOnFirstMessageOnly = nodeOnFirstMessageOnly
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
            guard types[url]!.wanted else { continue }
            out.append(request(url, error: nil))
        }
        return out
    }

    mutating func streamEnded() {
        streaming = false
    }

    /// A response was handled: the ACK (its version is now the type's) or, with `error`, the NACK (the version
    /// stays the last accepted one) that answers it.
    mutating func responded(typeURL: String, versionInfo: String, nonce: String, error: String?) -> Request? {
        guard types[typeURL] != nil else { return nil }
        types[typeURL]!.nonce = nonce
        types[typeURL]!.received = true
        if error == nil { types[typeURL]!.versionInfo = versionInfo }
        return request(typeURL, error: error)
    }

    /// The names wanted for a type changed: the request that says so, when a stream is up and they differ.
    mutating func namesChanged(typeURL: String, to names: Set<String>) -> Request? {
        guard var t = types[typeURL], !t.wildcard, t.names != names else { return nil }
        t.names = names
        types[typeURL] = t
        // An empty list would read as a wildcard subscription: the last names stay subscribed instead.
        guard streaming, !names.isEmpty else { return nil }
        return request(typeURL, error: nil)
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
