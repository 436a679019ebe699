import NIOCore
import NIOHTTP1
import SidecarCore

/// What a decoder or encoder filter tells the stream after seeing headers: Envoy's `FilterHeadersStatus`.
enum FilterHeadersStatus {
    /// Pass the headers to the next filter.
    case `continue`
    /// Hold the headers (and everything after them) here until the filter calls `continueDecoding()` /
    /// `continueEncoding()` on its stream, or sends a local reply.
    case stopIteration
}

/// Envoy's `FilterDataStatus`.
enum FilterDataStatus {
    /// Pass this data, with whatever this filter buffered before, to the next filter.
    case `continue`
    /// Keep this data in the stream's buffer at this filter; the filter is called again with the next chunk.
    case stopIterationAndBuffer
    /// The filter took the data (it will not be passed on).
    case stopIterationNoBuffer
}

/// Envoy's `FilterTrailersStatus`.
enum FilterTrailersStatus {
    case `continue`
    case stopIteration
}

/// One HTTP filter as a stream runs it (Envoy's `StreamFilter`: decoder and encoder in one). A filter sees the
/// request on the way in (`decode*`, in configuration order) and the response on the way out (`encode*`, in
/// reverse order); local replies pass through the encoders too.
///
/// Stateless filters are shared by every stream of a listener (their factory returns the same instance), so
/// whatever belongs to one request lives in the stream (`HTTPFilterStream`), not in the filter. A filter that
/// needs per-request state makes a new instance per stream.
///
/// Every method has a default that lets everything through, so a filter implements only what it acts on.
protocol HTTPStreamFilter: AnyObject {
    func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus
    func decodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus
    func decodeTrailers(_ trailers: inout HTTPHeaders, stream: HTTPFilterStream) -> FilterTrailersStatus
    func encodeHeaders(_ head: inout HTTPResponseHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus
    func encodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus
    func encodeTrailers(_ trailers: inout HTTPHeaders, stream: HTTPFilterStream) -> FilterTrailersStatus
    /// The stream ended (completed, reset, or the client left): release what this filter holds for it.
    func onStreamComplete(stream: HTTPFilterStream)
}

extension HTTPStreamFilter {
    func decodeHeaders(_ head: inout HTTPRequestHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        .continue
    }
    func decodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus {
        .continue
    }
    func decodeTrailers(_ trailers: inout HTTPHeaders, stream: HTTPFilterStream) -> FilterTrailersStatus { .continue }
    func encodeHeaders(_ head: inout HTTPResponseHead, endStream: Bool, stream: HTTPFilterStream) -> FilterHeadersStatus {
        .continue
    }
    func encodeData(_ data: inout ByteBuffer, endStream: Bool, stream: HTTPFilterStream) -> FilterDataStatus {
        .continue
    }
    func encodeTrailers(_ trailers: inout HTTPHeaders, stream: HTTPFilterStream) -> FilterTrailersStatus { .continue }
    func onStreamComplete(stream: HTTPFilterStream) {}
}

/// A configured filter ready to serve streams: made once per listener filter chain at start-up, with its
/// stats registered; shared by every worker, so it must be Sendable. Envoy's `FilterFactoryCb`.
protocol HTTPFilterFactory: Sendable {
    /// The filter's name in `http_filters`: the key of its `typed_per_filter_config` on routes.
    var name: String { get }
    /// The filter for one stream (a shared instance for stateless filters). Called on the stream's event loop.
    func makeFilter(stream: HTTPFilterStream) -> any HTTPStreamFilter
}

/// What start-up gives a filter config to become a factory.
struct HTTPFilterBuildContext {
    let registry: StatsRegistry
    /// The connection manager's `stat_prefix`.
    let statPrefix: String
    /// The filter's name in `http_filters`.
    let filterName: String
    /// The server's runtime, health-check state and identity.
    var server = ServerContext()
}

/// A decoded `http_filters` entry's typed_config.
protocol HTTPFilterConfig: Sendable {
    func makeFactory(_ context: HTTPFilterBuildContext) -> any HTTPFilterFactory
}

/// A per-route filter config that registers stats before the workers start (the registry is fixed then).
protocol StartupRegistering {
    func registerStats(_ registry: StatsRegistry)
}
