import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Envoy's words for a failed upstream connect, as `%UPSTREAM_TRANSPORT_FAILURE_REASON%` and the response code
/// details print them: a refused connection is `delayed_connect_error:_Connection_refused` (the socket error's
/// `strerror` text, spaces as `_`). A connect timeout has no transport failure reason in Envoy.
enum UpstreamConnectError {
    static func transportFailureReason(_ error: Error) -> String? {
        guard let code = errno(of: error) else { return nil }
        let text = String(cString: strerror(code))
        return "delayed_connect_error:_" + String(text.map { $0 == " " ? "_" : $0 })
    }

    private static func errno(of error: Error) -> Int32? {
        if let io = error as? IOError { return io.errnoCode }
        if let c = error as? NIOConnectionError {
            for failure in c.connectionErrors {
                if let code = errno(of: failure.error) { return code }
            }
        }
        return nil
    }
}
