import ArgumentParser
import Dispatch
import Foundation
import Injection
import Sidecar
import SidecarCore

/// `sidecar webhook`: the mutating admission webhook (HTTPS), running the same injection as `sidecar inject`.
/// Wiring only; `InjectionWebhookServer` and `AdmissionReviewHandler` do the work.
struct WebhookCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "webhook",
        _superCommandName: "sidecar",
        abstract: "Serve the sidecar-injection admission webhook (AdmissionReview v1 over HTTPS).",
        discussion: """
            POST /inject takes an AdmissionReview for a Pod and answers it with the injection as a JSON Patch (a pod \
            whose annotations are wrong is refused with a message naming the annotation); GET /healthz answers ok. \
            The certificate and key files are watched: a rotated Secret is used for new connections without a \
            restart. k8s/webhook/ holds the Deployment, Service and MutatingWebhookConfiguration.
            """)

    @Option(name: .customLong("cert"), help: ArgumentHelp("The serving certificate chain (PEM).", valueName: "file"))
    var certificate: String

    @Option(name: .customLong("key"), help: ArgumentHelp("Its private key (PEM).", valueName: "file"))
    var key: String

    @Option(name: .customLong("host"), help: "Address to listen on.")
    var host = "0.0.0.0"

    @Option(name: .customLong("port"), help: "HTTPS port.")
    var port = 9443

    @Option(name: .customLong("secret-dir"), help: "Writable directory for the SDS file that names the certificate (default /run/pilotfish).")
    var secretDirectory = "/run/pilotfish"

    @Option(name: [.customShort("l"), .customLong("log-level")], help: "trace, debug, info, warning, error, critical, off.")
    var logLevel = "info"

    @OptionGroup var options: InjectorOptions

    func run() throws {
        guard let level = Log.Level(name: logLevel) else { throw ValidationError("--log-level: '\(logLevel)' is not a level") }
        Log.level = level
        let handler = AdmissionReviewHandler(settings: try options.settings())
        let server: InjectionWebhookServer
        do {
            server = try InjectionWebhookServer(handler: handler, certificate: certificate, key: key, host: host,
                                                port: port, secretDirectory: secretDirectory)
        } catch {
            print("error: \(error)", to: &StandardError.stream)
            throw ExitCode(1)
        }
        let sources = onTerminationSignals { _ in server.stop() }
        try server.wait()
        withExtendedLifetime(sources) {}
        Log.info("webhook stopped")
    }
}
