import ArgumentParser
import Foundation
import Sidecar
import SidecarCore

/// `sidecar wait-ready`: exits 0 once the local sidecar is ready, 1 when it was not within the timeout. The
/// injector makes it a classic sidecar's postStart hook. Wiring only; `ReadinessWait` does the work.
struct WaitReadyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait-ready",
        _superCommandName: "sidecar",
        abstract: "Wait until the pod's sidecar answers GET /healthz/ready with 200.")

    @Option(name: .customLong("port"), help: "The sidecar's readiness port.")
    var port = PodDefaults.readinessPort

    @Option(name: .customLong("timeout"), help: "How long to wait: seconds, or with an s/m suffix (120s, 2m).")
    var timeout = "120s"

    func run() throws {
        let seconds: Double
        if timeout.hasSuffix("m"), let m = Double(timeout.dropLast()) {
            seconds = m * 60
        } else if let s = Double(timeout.hasSuffix("s") ? String(timeout.dropLast()) : timeout) {
            seconds = s
        } else {
            throw ValidationError("--timeout: '\(timeout)' is not a duration (e.g. 120s, 2m)")
        }
        if ReadinessWait.waitUntilReady(port: port, timeout: seconds) { return }
        print("error: the sidecar was not ready on 127.0.0.1:\(port) within \(timeout)", to: &StandardError.stream)
        throw ExitCode(1)
    }
}
