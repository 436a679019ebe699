import NIOHTTP1

extension HTTPHeaders {
    /// NIO's `replaceOrAdd` (every value of `name` removed, this one added at the end), cheaper when the header
    /// is absent, as the proxy's own headers (`x-envoy-upstream-service-time`, `x-envoy-expected-rq-timeout-ms`)
    /// usually are: `replaceOrAdd` always rebuilds the list to remove, which cost about 1,600 instructions a call
    /// on the hot path; a scan and an append cost a third of that. Inlinable: the proxy and the tracers' context
    /// injection (SidecarTracing) call it per request from other targets.
    @inlinable
    package mutating func replaceOrAddScanningFirst(name: String, value: String) {
        if contains(name: name) {
            replaceOrAdd(name: name, value: value)
        } else {
            add(name: name, value: value)
        }
    }
}
