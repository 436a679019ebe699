import ArgumentParser
import Foundation
import Injection
import Sidecar

/// The injector's defaults, shared by `sidecar inject` and `sidecar webhook`; a pod's annotations override them.
struct InjectorOptions: ParsableArguments {
    @Option(name: .customLong("image"), help: "The image holding sidecar and sidecar-init (also PILOTFISH_IMAGE).")
    var image: String?

    @Option(name: .customLong("native-sidecars"), help: "true (default): the sidecar is a native sidecar (an init container with restartPolicy Always, Kubernetes 1.29+); false: the first container.")
    var nativeSidecars: Bool = true

    @Option(name: .customLong("interception-mode"), help: "redirect (default) or tproxy.")
    var interceptionMode: String = "redirect"

    @Option(name: .customLong("mtls"), help: "STRICT, PERMISSIVE or DISABLE (default): the pods' mTLS mode unless annotated.")
    var mtls: String = "DISABLE"

    @Option(name: .customLong("mesh-cidrs"), help: "Comma-separated destinations that have a sidecar (the pod CIDRs): with mTLS on, the sidecar originates mTLS to them.")
    var meshCIDRs: String?

    static let defaultImage = "ghcr.io/pilotfish/pilotfish:\(SidecarVersion.string)"

    func settings() throws -> InjectorSettings {
        let env = ProcessInfo.processInfo.environment
        var s = InjectorSettings(image: image ?? env["PILOTFISH_IMAGE"] ?? Self.defaultImage, version: SidecarVersion.string)
        s.nativeSidecars = nativeSidecars
        guard let mode = InterceptionMode(text: interceptionMode) else {
            throw ValidationError("--interception-mode: '\(interceptionMode)' is not \(InterceptionMode.choices)")
        }
        s.interceptionMode = mode
        guard let m = MTLSMode(text: mtls) else {
            throw ValidationError("--mtls: '\(mtls)' is not \(MTLSMode.choices)")
        }
        s.mtls = m
        if let meshCIDRs {
            s.meshCIDRs = meshCIDRs.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            for c in s.meshCIDRs where !PodInjectionOptions.isValidCIDR(c) {
                throw ValidationError("--mesh-cidrs: '\(c)' is not an IP range (CIDR)")
            }
        }
        return s
    }
}

/// `sidecar inject -f FILE`: offline injection, as `istioctl kube-inject` and `linkerd inject`. Wiring only; the
/// Injection library does the work.
struct InjectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inject",
        _superCommandName: "sidecar",
        abstract: "Add the sidecar to every pod template of Kubernetes manifests (YAML or JSON) and print them.",
        discussion: """
            Reads Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and Lists (multi-document \
            YAML or JSON) and writes them injected, as YAML, to standard output; anything that is not a pod template \
            passes through. A pod already injected (annotation pilotfish.io/status) or opted out \
            (pilotfish.io/inject: "false", or sidecar.istio.io/inject) is left as it is. What happened to each pod \
            template goes to standard error. Exit status 64: the input is not valid (the message names the document \
            and the field).
            """)

    @Option(name: .customShort("f"), help: ArgumentHelp("The manifests; - reads standard input.", valueName: "file"))
    var file: String

    @OptionGroup var options: InjectorOptions

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Do not report each pod template on standard error.")
    var quiet = false

    func run() throws {
        let settings = try options.settings()
        let text: String
        if file == "-" {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        } else {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw ValidationError("-f \(file): cannot read the file")
            }
            text = String(decoding: data, as: UTF8.self)
        }
        do {
            let (yaml, reports) = try ManifestInjector(settings: settings).inject(text: text)
            print(yaml, terminator: "")
            if !quiet {
                for r in reports {
                    let what: String
                    switch r.outcome {
                    case .injected: what = "injected"
                    case .skipped(let why): what = "left as it was (\(why))"
                    }
                    FileHandle.standardError.write(Data("inject: document \(r.document): \(r.object): \(what)\n".utf8))
                }
            }
        } catch let e as ManifestError {
            FileHandle.standardError.write(Data("inject: \(file == "-" ? "stdin" : file): \(e.message)\n".utf8))
            throw ExitCode(64)
        }
    }
}
