import Sidecar

/// The listener filters that read a connection's first bytes before any filter chain is chosen: Envoy's
/// tls_inspector (ClientHello: SNI, ALPN) and http_inspector (request line or HTTP/2 preface). Each prefix is
/// inspected as it would be when the bytes arrive in pieces.
enum InspectorFuzz {
    static func run(_ input: UnsafeRawBufferPointer) {
        let bytes = Array(input)
        _ = TLSInspector.inspect(bytes)
        _ = HTTPInspector.inspect(bytes)
        // The inspectors are called again as more bytes arrive; a few cut points stand for that.
        for cut in [1, 5, 9, bytes.count / 2] where cut < bytes.count {
            _ = TLSInspector.inspect(bytes[..<cut])
            _ = HTTPInspector.inspect(bytes[..<cut])
        }
    }
}
