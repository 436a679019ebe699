import ArgumentParser
import Dispatch
import Foundation
import Sidecar
import SidecarCore

/// `sidecar run-app -- CMD...`: a Job's app under a classic (not native) sidecar. Runs the app once the sidecar is
/// ready, passes SIGTERM/SIGINT on to it, and when it exits asks the sidecar to quit (`POST /quitquitquit`), so the
/// pod completes; exits with the app's status. The injector wraps the command of a run-to-completion pod's app
/// container with it (the binary comes from `sidecar install-to`).
struct RunAppCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run-app",
        _superCommandName: "sidecar",
        abstract: "Run a Job's app next to a classic sidecar, then tell the sidecar to quit.")

    @Option(name: .customLong("ready-port"), help: "The sidecar's readiness port.")
    var readyPort = PodDefaults.readinessPort

    @Option(name: .customLong("admin-port"), help: "The sidecar's admin port (for /quitquitquit).")
    var adminPort = PodDefaults.adminPort

    @Option(name: .customLong("ready-timeout"), help: "Seconds to wait for the sidecar before running the app anyway.")
    var readyTimeout: Double = 120

    @Argument(parsing: .captureForPassthrough, help: "The app's command and arguments, after --.")
    var command: [String] = []

    func run() throws {
        let argv = command.first == "--" ? Array(command.dropFirst()) : command
        guard let executable = argv.first else { throw ValidationError("no command: sidecar run-app -- CMD [ARG...]") }
        if !ReadinessWait.waitUntilReady(port: readyPort, timeout: readyTimeout) {
            print("run-app: the sidecar was not ready within \(Int(readyTimeout)) s; running the app anyway",
                  to: &StandardError.stream)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable.contains("/") ? executable : Self.which(executable))
        process.arguments = Array(argv.dropFirst())
        let sources = onTerminationSignals { sig in if process.isRunning { kill(process.processIdentifier, sig) } }
        do {
            try process.run()
        } catch {
            print("run-app: cannot run \(executable): \(error)", to: &StandardError.stream)
            _ = ReadinessWait.quit(adminPort: adminPort)
            throw ExitCode(127)
        }
        process.waitUntilExit()
        withExtendedLifetime(sources) {}
        if !ReadinessWait.quit(adminPort: adminPort) {
            print("run-app: the sidecar did not take /quitquitquit on 127.0.0.1:\(adminPort)", to: &StandardError.stream)
        }
        switch process.terminationReason {
        case .exit: throw ExitCode(process.terminationStatus)
        case .uncaughtSignal: throw ExitCode(128 + process.terminationStatus)
        @unknown default: throw ExitCode(1)
        }
    }

    /// `name` looked up in PATH, as exec would.
    static func which(_ name: String) -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return name
    }
}

/// `sidecar install-to DIR`: copies this executable to DIR/sidecar, for the app container of a run-to-completion pod
/// whose command `sidecar run-app` wraps (the injector's `pilotfish-bin` init container runs it).
struct InstallToCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install-to",
        _superCommandName: "sidecar",
        abstract: "Copy this sidecar executable into a directory (for sidecar run-app in another container).")

    @Argument(help: "The directory (an emptyDir shared with the app container).")
    var directory: String

    func run() throws {
        let source = "/proc/self/exe"
        let target = (directory as NSString).appendingPathComponent("sidecar")
        let tmp = target + ".tmp"
        let fm = FileManager.default
        do {
            try? fm.removeItem(atPath: tmp)
            try fm.copyItem(atPath: (try fm.destinationOfSymbolicLink(atPath: source)), toPath: tmp)
            try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: tmp)
            if rename(tmp, target) != 0 { throw CocoaError(.fileWriteUnknown) }
        } catch {
            print("error: cannot install the sidecar into \(directory): \(error)", to: &StandardError.stream)
            throw ExitCode(1)
        }
    }
}
