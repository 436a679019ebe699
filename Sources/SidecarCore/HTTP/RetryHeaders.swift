import NIOCore
import NIOHTTP1

/// The `x-envoy-*` request headers that steer retries and timeouts. Envoy honours them only on requests it
/// considers internal (`ConnectionManagerUtility::mutateRequestHeaders`), and since 1.36 no address is
/// internal unless `internal_address_config` lists it (checked on Envoy 1.40: with default settings the
/// headers are ignored whatever `x-forwarded-for` says). Pilotfish does not support `internal_address_config`,
/// so every request is external: these headers are removed before the request is forwarded
/// (`cleanInternalHeaders`), and a client cannot make the mesh retry on its behalf.
package enum RetryHeaders {
    /// The router's own headers (`RetryState.consumedRequestHeaders`) and the other timeout headers
    /// `cleanInternalHeaders` removes from external requests.
    package static let names = RetryState.consumedRequestHeaders + [
        "x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-timeout-alt-response", "x-envoy-expected-rq-timeout-ms",
    ]

    private static let prefix = Array("x-envoy-".utf8)

    /// Case-insensitive `x-envoy-` prefix test without allocating.
    package static func hasEnvoyPrefix(_ name: String) -> Bool {
        var i = 0
        for b in name.utf8 {
            if i == prefix.count { return true }
            if b | 0x20 != prefix[i] { return false }
            i += 1
        }
        return false
    }

    package static func strip(_ headers: inout HTTPHeaders) {
        // One pass to see whether there is anything to do: most requests carry no x-envoy-* header.
        guard headers.contains(where: { hasEnvoyPrefix($0.name) }) else { return }
        for n in names where headers.contains(name: n) { headers.remove(name: n) }
    }
}
