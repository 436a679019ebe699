import NIOHTTP1

/// Whoever holds an upstream connection for a request: the pool and the connection know only this, never a
/// downstream handler type (async-http-client's `HTTPRequestExecutor` / `HTTPSchedulableRequest` split).
package protocol UpstreamResponseReceiver: AnyObject {
    /// Upstream reads wait while this is false (backpressure from the downstream).
    var downstreamWritable: Bool { get }
    func upstreamRead(_ part: HTTPClientResponsePart)
    func upstreamReadComplete()
    func upstreamBecameWritable()
    /// The connection closed under the request.
    func upstreamClosed()
    /// An HTTP/2 response whose header block ended the stream (no body, no trailers: a gRPC trailers-only answer).
    func upstreamHeadEndedStream(_ head: HTTPResponseHead)
}

extension UpstreamResponseReceiver {
    package func upstreamHeadEndedStream(_ head: HTTPResponseHead) {
        upstreamRead(.head(head))
        upstreamRead(.end(nil))
    }
}
