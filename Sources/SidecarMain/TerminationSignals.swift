import Dispatch
import Foundation

/// SIGTERM and SIGINT handled on a dispatch queue instead of ending the process: what every long-running subcommand
/// (the proxy, the webhook, run-app) does with them. Keep the returned sources alive while they should act.
func onTerminationSignals(_ body: @escaping @Sendable (Int32) -> Void) -> [DispatchSourceSignal] {
    [SIGTERM, SIGINT].map { sig in
        signal(sig, SIG_IGN)
        let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        s.setEventHandler { body(sig) }
        s.resume()
        return s
    }
}
