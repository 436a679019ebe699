import ArgumentParser
import Dispatch
import Foundation
import NIOCore
import Sidecar
import SidecarCore

/// `sidecar -c envoy.yaml`: Envoy's command line, for the flags Pilotfish has.
struct SidecarCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sidecar",
        abstract: "Pilotfish: a transparent service-mesh sidecar configured with Envoy v3 YAML/JSON.",
        discussion:
            "Without a subcommand, runs the proxy (Envoy's command line); `sidecar certs` issues mesh identities; "
            + "`sidecar route-check` tests a route table as Envoy's router_check_tool does.",
        version: SidecarVersion.string,
        subcommands: [CertsCommand.self, RouteCheckCommand.self, InjectCommand.self, WebhookCommand.self, WaitReadyCommand.self,
                      RunAppCommand.self, InstallToCommand.self, ConfigFieldsCommand.self])

    @Option(name: [.customShort("c"), .customLong("config-path")], help: "Envoy v3 bootstrap file (YAML or JSON).")
    var configPath: String?

    @Option(name: .customLong("config-yaml"), help: "Bootstrap given inline as YAML.")
    var configYAML: String?

    @Option(name: .customLong("concurrency"), help: "Worker event loops (default: number of cores).")
    var concurrency: Int?

    @Option(name: [.customShort("l"), .customLong("log-level")], help: "trace, debug, info, warning, error, critical, off.")
    var logLevel: String = "info"

    @Option(name: .customLong("mode"), help: "serve (default) or validate: check the config, print the verdict, exit 0 or 1.")
    var mode: String = "serve"

    @Option(name: .customLong("drain-time-s"), help: "Seconds in-flight requests get to finish on SIGTERM/SIGINT.")
    var drainTimeSeconds: Int = 5

    @Flag(name: .customLong("print-default-config"), help: "Print the built-in config (used when no -c is given) and exit.")
    var printDefaultConfig = false

    @Flag(name: .customLong("disable-hot-restart"), help: "Accepted for Envoy compatibility; Pilotfish has no hot restart.")
    var disableHotRestart = false

    @Flag(
        name: .customLong("pod-defaults"),
        help: "Run as a pod's transparent sidecar with the built-in pod config (capture ports \(PodDefaults.outboundPort)/\(PodDefaults.inboundPort), admin \(PodDefaults.adminPort), readiness \(PodDefaults.readinessPort)); also PILOTFISH_POD_DEFAULTS=1.")
    var podDefaults = false

    @Option(name: .customLong("capture-mode"), help: "With --pod-defaults: tproxy or redirect, as given to sidecar-init --mode (default tproxy; also PILOTFISH_CAPTURE_MODE).")
    var captureMode: String?

    @Option(name: .customLong("mtls"), help: "With --pod-defaults: STRICT, PERMISSIVE or DISABLE (default; also PILOTFISH_MTLS). Mutual TLS between sidecars with the pod's identity.")
    var mtls: String?

    @Option(name: .customLong("identity-dir"), help: "With --mtls: tls.crt, tls.key and ca.crt from `sidecar certs workload` (default /etc/pilotfish/identity; also PILOTFISH_IDENTITY_DIR).")
    var identityDir: String?

    @Option(name: .customLong("mesh-cidrs"), help: "With --mtls: comma-separated destinations that have a sidecar; outbound connections to them originate mTLS (also PILOTFISH_MESH_CIDRS).")
    var meshCIDRs: String?

    @Option(name: .customLong("secret-dir"), help: "With --mtls: where the SDS files naming the identity files are written (default /run/pilotfish; also PILOTFISH_SECRET_DIR).")
    var secretDir: String?

    @Option(name: .customLong("tracing"), help: "With --pod-defaults: zipkin or otlp (OTLP over gRPC); every request gets a span, sent to --tracing-collector (also PILOTFISH_TRACING).")
    var tracing: String?

    @Option(name: .customLong("tracing-collector"), help: "With --tracing: the collector's HOST:PORT (also PILOTFISH_TRACING_COLLECTOR).")
    var tracingCollector: String?

    @Option(name: .customLong("tracing-service-name"), help: "With --tracing otlp: the spans' service.name (default pilotfish; also PILOTFISH_TRACING_SERVICE_NAME).")
    var tracingServiceName: String?

    @Option(name: .customLong("xds-address"), help: "With --pod-defaults: a control plane's HOST:PORT; clusters and listeners come from it over ADS, and its listeners replace the zero-config ones at their addresses (also PILOTFISH_XDS_ADDRESS). The node id is Istio's form from POD_IP, POD_NAME and POD_NAMESPACE, or PILOTFISH_NODE_ID; its cluster PILOTFISH_NODE_CLUSTER (default pilotfish).")
    var xdsAddress: String?

    @Flag(name: .customLong("print-config"), help: "Print the config that would run (e.g. the generated pod config) and exit.")
    var printConfig = false

    var environment: [String: String] { ProcessInfo.processInfo.environment }

    var usePodDefaults: Bool {
        podDefaults || ["1", "true", "yes"].contains(environment["PILOTFISH_POD_DEFAULTS"]?.lowercased() ?? "")
    }

    var resolvedCaptureMode: PodDefaults.CaptureMode? {
        PodDefaults.CaptureMode(rawValue: (captureMode ?? environment["PILOTFISH_CAPTURE_MODE"] ?? "tproxy").lowercased())
    }

    /// Checked in `run()` rather than `validate()`: ArgumentParser validates every command on the path, so a
    /// `validate()` here would also judge `sidecar certs …` by the serve flags' environment variables.
    func validateServeOptions() throws {
        if let c = concurrency, c < 1 { throw ValidationError("--concurrency must be at least 1") }
        if drainTimeSeconds < 0 { throw ValidationError("--drain-time-s must not be negative") }
        if Log.Level(name: logLevel) == nil { throw ValidationError("unknown --log-level '\(logLevel)'") }
        if mode != "serve" && mode != "validate" { throw ValidationError("--mode must be serve or validate") }
        if usePodDefaults && (configPath != nil || configYAML != nil) {
            throw ValidationError("--pod-defaults builds the config itself; drop -c/--config-yaml (or drop --pod-defaults)")
        }
        if (mtls != nil || identityDir != nil || meshCIDRs != nil || secretDir != nil) && !usePodDefaults {
            throw ValidationError("--mtls, --identity-dir, --mesh-cidrs and --secret-dir only apply with --pod-defaults")
        }
        if (tracing != nil || tracingCollector != nil || tracingServiceName != nil) && !usePodDefaults {
            throw ValidationError("--tracing, --tracing-collector and --tracing-service-name only apply with --pod-defaults")
        }
        if xdsAddress != nil && !usePodDefaults {
            throw ValidationError("--xds-address only applies with --pod-defaults (a config file names its control plane itself)")
        }
        if captureMode != nil && !usePodDefaults {
            throw ValidationError("--capture-mode only applies with --pod-defaults")
        }
        if usePodDefaults && resolvedCaptureMode == nil {
            throw ValidationError("unknown capture mode '\(captureMode ?? environment["PILOTFISH_CAPTURE_MODE"] ?? "")'; use tproxy or redirect (as sidecar-init --mode)")
        }
    }

    /// `--tracing` with its collector, from the flags or the environment; nil when tracing is off.
    func podTracing() throws -> PodDefaults.Tracing? {
        guard let name = tracing ?? environment["PILOTFISH_TRACING"], !name.isEmpty, name != "off" else { return nil }
        guard let provider = PodDefaults.Tracing.Provider(rawValue: name.lowercased()) else {
            throw ValidationError("unknown --tracing '\(name)'; use zipkin or otlp")
        }
        guard let collector = tracingCollector ?? environment["PILOTFISH_TRACING_COLLECTOR"] else {
            throw ValidationError("--tracing \(name) needs --tracing-collector HOST:PORT")
        }
        return try PodDefaults.Tracing(
            provider: provider, collector: collector,
            serviceName: tracingServiceName ?? environment["PILOTFISH_TRACING_SERVICE_NAME"] ?? "pilotfish")
    }

    /// `--xds-address` with the node, from the flags or the environment; nil without a control plane.
    func podXDS() throws -> PodDefaults.XDS? {
        guard let address = xdsAddress ?? environment["PILOTFISH_XDS_ADDRESS"], !address.isEmpty else { return nil }
        return try PodDefaults.XDS(
            address: address,
            nodeID: PodDefaults.XDS.nodeID(environment: environment, hostname: ProcessInfo.processInfo.hostName),
            nodeCluster: environment["PILOTFISH_NODE_CLUSTER"].flatMap { $0.isEmpty ? nil : $0 } ?? "pilotfish")
    }

    func run() throws {
        try validateServeOptions()
        Log.level = Log.Level(name: logLevel)!
        if printDefaultConfig {
            print(DefaultConfig.yaml)
            return
        }
        let source: String
        let bootstrap: Bootstrap
        do {
            if let configPath {
                guard let data = FileManager.default.contents(atPath: configPath) else {
                    throw ConfigError(path: "", line: nil, message: "cannot read config file '\(configPath)'")
                }
                source = String(decoding: data, as: UTF8.self)
            } else if let configYAML {
                source = configYAML
            } else if usePodDefaults {
                let mesh: PodDefaults.MeshTLS?
                do {
                    mesh = try PodDefaults.MeshTLS.resolve(
                        mode: mtls, identityDirectory: identityDir, meshCIDRs: meshCIDRs, secretDirectory: secretDir,
                        environment: environment)
                    try mesh?.writeSecretFiles()
                } catch {
                    print("error: \(error)", to: &StandardError.stream)
                    throw ExitCode(1)
                }
                // The app's probes, moved to the readiness port by `sidecar inject` (an empty value means none).
                let probes = environment["PILOTFISH_APP_PROBES"].flatMap { $0.isEmpty ? nil : $0 }
                source = PodDefaults.yaml(captureMode: resolvedCaptureMode!, mesh: mesh, tracing: try podTracing(),
                                          appProbes: probes, xds: try podXDS())
            } else {
                Log.info("no -c given: running the built-in default config (see --print-default-config)")
                source = DefaultConfig.yaml
            }
            var loaded = try Bootstrap.load(text: source)
            if usePodDefaults { loaded.fallbackListeners = PodDefaults.fallbackListeners }
            bootstrap = loaded
        } catch let e as ConfigError {
            let file = configPath ?? (configYAML != nil ? "--config-yaml" : usePodDefaults ? "<pod defaults>" : "<built-in default>")
            // Every problem found, one a line, sorted by line: a fix-and-retry loop per error is slow.
            for problem in e.all {
                print("error: invalid config \(file): \(problem)", to: &StandardError.stream)
            }
            if e.all.count > 1 {
                print("\(e.all.count) errors in config \(file)", to: &StandardError.stream)
            }
            throw ExitCode(1)
        }
        if printConfig {
            print(source)
            return
        }
        if mode == "validate" {
            do {
                try SidecarServer.checkTLSFiles(bootstrap)
            } catch {
                print("error: invalid config: \(error)", to: &StandardError.stream)
                throw ExitCode(1)
            }
            print("configuration '\(configPath ?? (configYAML != nil ? "--config-yaml" : usePodDefaults ? "<pod defaults>" : "<built-in default>"))' OK")
            return
        }
        let server = SidecarServer(
            bootstrap: bootstrap, concurrency: concurrency ?? System.coreCount,
            drainTime: .seconds(Int64(drainTimeSeconds)), configSource: source)
        do {
            try Privileges.check(bootstrap)
            server.holdReadiness()
            try server.start()
            // Listeners are bound: nothing the proxy does from here on needs a capability.
            try server.dropCapabilities()
            server.releaseReadiness()
        } catch {
            print("error: \(error)", to: &StandardError.stream)
            try? server.shutdown()
            throw ExitCode(1)
        }
        let sources = onTerminationSignals { _ in server.drainAndStop() }
        try server.waitUntilStopped()
        withExtendedLifetime(sources) {}
    }
}

enum StandardError {
    nonisolated(unsafe) static var stream = Stream()
    struct Stream: TextOutputStream {
        mutating func write(_ string: String) { FileHandle.standardError.write(Data(string.utf8)) }
    }
}

// route-check takes router_check_tool's `-c/--config-path`, which the proxy command defines too, and
// ArgumentParser gives a flag both define to the parent command; so route-check is parsed on its own.
let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == RouteCheckCommand.configuration.commandName {
    RouteCheckCommand.main(Array(arguments.dropFirst()))
} else {
    SidecarCommand.main()
}
