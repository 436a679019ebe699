/// The fuzz targets: each takes one input of arbitrary bytes and runs it through a part of the sidecar that reads
/// untrusted input. A crash, a sanitizer report or a hang in `run` is a bug; everything the input can cause
/// short of that (config errors, 400s, resets, closed connections) is the expected outcome.
///
/// `pilotfish-fuzz` (Sources/PilotfishFuzz) runs them under libFuzzer (scripts/fuzz); the test suite replays their
/// corpora and every crash found so far (Tests/Fuzz) through the same `run`, so a fixed crash stays fixed.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// Bootstrap decoding, YAML and JSON: the text goes through `Bootstrap.load` as `sidecar -c` reads it.
    case config
    /// The HTTP/1 request stream through the real proxy on loopback: listener, codec, filter chain, router,
    /// upstream pool and a backend, in this process.
    case http1
    /// The HTTP/2 frame path through the same proxy: the input follows the client preface and a SETTINGS frame.
    case http2
    /// The tls_inspector and http_inspector parsers, on the connection's first bytes.
    case inspectors
    /// The route table: Envoy's router_check route configs and one of ours, with path normalisation, for a
    /// request the input describes.
    case routes
    /// A control plane's DiscoveryResponse (protobuf bytes) through the ADS decoding: CDS, EDS and RDS.
    case xds

    /// Runs one input. Must not crash for any input.
    public func run(_ input: UnsafeRawBufferPointer) {
        switch self {
        case .config: ConfigFuzz.run(input)
        case .http1: ProxyFuzz.shared.runHTTP1(input)
        case .http2: ProxyFuzz.shared.runHTTP2(input)
        case .inspectors: InspectorFuzz.run(input)
        case .routes: RouteFuzz.shared.run(input)
        case .xds: XDSFuzz.run(input)
        }
    }

    public func run(_ input: [UInt8]) {
        input.withUnsafeBytes { run($0) }
    }

    /// Sets up what the target keeps between inputs (the in-process proxy, the route tables), so that the first
    /// input is not charged with it.
    public func prepare() {
        switch self {
        case .http1, .http2: _ = ProxyFuzz.shared
        case .routes: _ = RouteFuzz.shared
        case .config, .inspectors, .xds: break
        }
    }
}
