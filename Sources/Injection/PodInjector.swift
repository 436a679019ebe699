import MeshCapture

/// Injects one pod template: the `sidecar-init` init container, the sidecar (native or not), their volumes, the
/// rewritten probes and the status annotation that makes a second injection change nothing.
public struct PodInjector: Sendable {
    public static let initName = "pilotfish-init"
    public static let proxyName = "pilotfish-proxy"
    public static let binName = "pilotfish-bin"
    public static let binDir = "/pilotfish/bin"
    public static let runVolume = "pilotfish-run"
    public static let identityVolume = "pilotfish-identity"
    public static let statusAnnotation = "pilotfish.io/status"
    public static let identityDir = "/etc/pilotfish/identity"
    public static let secretDir = "/run/pilotfish"
    /// The Secret holding a service account's workload identity (`sidecar certs workload`, as a kubernetes.io/tls
    /// Secret with ca.crt).
    public static func identitySecret(serviceAccount: String) -> String { "pilotfish-identity-\(serviceAccount)" }

    public var settings: InjectorSettings
    public init(settings: InjectorSettings) { self.settings = settings }

    /// What became of a pod template.
    public enum Outcome: Equatable, Sendable {
        case injected
        /// Left as it was, and why.
        case skipped(String)
    }

    /// Injects the pod template made of `metadata` and `spec` (at `path`, for errors), in place.
    public func inject(metadata: inout KubeObject, spec: inout KubeObject, at path: String) throws -> Outcome {
        let annotations = metadata["annotations"]?.object
        let labels = metadata["labels"]?.object
        // Kubernetes takes only strings there (`native-sidecar: false` unquoted is refused by the API server):
        // an unquoted value is an error here too, not an annotation quietly not seen.
        for (field, map) in [("annotations", annotations), ("labels", labels)] {
            for (key, value) in map?.pairs ?? [] where value.string == nil {
                throw ManifestError("\(path).metadata.\(field)[\(key)]: \(value.json) is not a string; Kubernetes "
                    + "takes only strings there (quote it)")
            }
        }
        if annotations?[Self.statusAnnotation] != nil { return .skipped("already injected") }
        if PodInjectionOptions.optedOut(annotations: annotations, labels: labels) { return .skipped("opted out") }
        if case .bool(true) = spec["hostNetwork"] ?? .null {
            return .skipped("hostNetwork: capture rules would apply to the node")
        }
        let options = try PodInjectionOptions(settings: settings, annotations: annotations, at: "\(path).metadata")
        let specPath = "\(path).spec"
        var containers = try Self.objects(spec["containers"], at: "\(specPath).containers")
        var initContainers = try Self.objects(spec["initContainers"], at: "\(specPath).initContainers")
        var volumes = try Self.objects(spec["volumes"], at: "\(specPath).volumes")
        let taken = Set((containers + initContainers).compactMap { $0["name"]?.string })
        for name in [Self.initName, Self.proxyName, Self.binName] where taken.contains(name) {
            throw ManifestError("\(specPath): a container is already named \(name), the name the injector uses")
        }
        for name in [Self.runVolume, Self.identityVolume, Self.binName]
        where volumes.contains(where: { $0["name"]?.string == name }) {
            throw ManifestError("\(specPath).volumes: a volume is already named \(name), the name the injector uses")
        }
        for (i, c) in containers.enumerated() {
            for (j, p) in (c["ports"]?.array ?? []).enumerated() {
                if let n = p.object?["containerPort"]?.int, (15000...15090).contains(n) {
                    throw ManifestError("\(specPath).containers[\(i)].ports[\(j)].containerPort: \(n) is in 15000-15090, "
                        + "which the sidecar keeps for itself")
                }
            }
        }

        // The app's probes go to the sidecar.
        var probes: [(String, KubeValue)] = []
        if options.rewriteProbes {
            for i in containers.indices {
                probes += try ProbeRewrite.rewrite(&containers[i], at: "\(specPath).containers[\(i)]")
            }
        }

        // Identity: a volume of the pod named by annotation, else the service account's Secret.
        var identity: String?
        if options.mtls != .disable {
            if let named = options.identityVolume {
                guard volumes.contains(where: { $0["name"]?.string == named }) else {
                    throw ManifestError("\(path).metadata.annotations[\(PodInjectionOptions.Key.identityVolume.rawValue)]: "
                        + "the pod has no volume named '\(named)'")
                }
                identity = named
            } else {
                let account = spec["serviceAccountName"]?.string ?? "default"
                volumes.append(KubeObject([
                    ("name", .string(Self.identityVolume)),
                    ("secret", .object(KubeObject([("secretName", .string(Self.identitySecret(serviceAccount: account)))]))),
                ]))
                identity = Self.identityVolume
            }
        }
        volumes.append(KubeObject([
            ("name", .string(Self.runVolume)),
            ("emptyDir", .object(KubeObject([("medium", .string("Memory"))]))),
        ]))

        let initContainer = captureContainer(options)
        var proxy = proxyContainer(options, identityVolume: identity, probes: probes)
        var status = KubeObject([("version", .string(settings.version))])
        if options.nativeSidecar {
            proxy["restartPolicy"] = .string("Always")
            // sidecar-init first, then the sidecar, then the app's own init containers (their traffic is captured,
            // so the sidecar must already run).
            initContainers = [initContainer, proxy] + initContainers
            status["initContainers"] = .array([.string(Self.initName), .string(Self.proxyName)])
            status["containers"] = .array([])
        } else {
            // First among the containers, and the next container starts only once its postStart hook saw it ready.
            proxy["lifecycle"] = .object(KubeObject([("postStart", .object(KubeObject([("exec", .object(KubeObject([
                ("command", .array(["sidecar", "wait-ready", "--timeout", "120s"].map { .string($0) })),
            ])))])))]))
            var injectedInit = [initContainer]
            if ["Never", "OnFailure"].contains(spec["restartPolicy"]?.string ?? "Always") {
                // A pod that runs to completion (a Job's) would never complete while a classic sidecar runs: the app
                // runs under `sidecar run-app`, which asks the sidecar to quit when the app exits.
                try Self.wrapForCompletion(&containers, at: specPath)
                injectedInit.append(binContainer())
                volumes.append(KubeObject([("name", .string(Self.binName)), ("emptyDir", .object(KubeObject()))]))
            }
            initContainers = injectedInit + initContainers
            containers = [proxy] + containers
            status["initContainers"] = .array(injectedInit.compactMap { $0["name"] })
            status["containers"] = .array([.string(Self.proxyName)])
        }
        let ours = [Self.identityVolume, Self.runVolume, Self.binName]
        status["volumes"] = .array(volumes.compactMap { $0["name"]?.string }.filter { ours.contains($0) }.map { .string($0) })

        spec["initContainers"] = .array(initContainers.map { .object($0) })
        spec["containers"] = .array(containers.map { .object($0) })
        spec["volumes"] = .array(volumes.map { .object($0) })
        var newAnnotations = annotations ?? KubeObject()
        newAnnotations[Self.statusAnnotation] = .string(KubeValue.object(status).json)
        metadata["annotations"] = .object(newAnnotations)
        return .injected
    }

    /// The one app container of a run-to-completion pod runs under `sidecar run-app` (from the `pilotfish-bin`
    /// volume). Its command must be known: the image's entrypoint is not.
    private static func wrapForCompletion(_ containers: inout [KubeObject], at specPath: String) throws {
        let advice = "with a classic (not native) sidecar; native sidecars (pilotfish.io/native-sidecar: \"true\", "
            + "Kubernetes 1.29+) need neither"
        guard containers.count == 1 else {
            throw ManifestError("\(specPath).containers: a pod that runs to completion (restartPolicy "
                + "Never/OnFailure) needs exactly one app container \(advice): the sidecar must quit when the app exits")
        }
        var app = containers[0]
        guard let command = app["command"]?.array, !command.isEmpty else {
            throw ManifestError("\(specPath).containers[0].command: needed for a pod that runs to completion \(advice): "
                + "the injector wraps it with `sidecar run-app` and cannot see the image's entrypoint")
        }
        let args = app["args"]?.array ?? []
        app["command"] = .array([.string("\(binDir)/sidecar"), .string("run-app"), .string("--")] + command + args)
        app["args"] = nil
        var mounts = try objects(app["volumeMounts"], at: "\(specPath).containers[0].volumeMounts")
        mounts.append(KubeObject([("name", .string(binName)), ("mountPath", .string(binDir)), ("readOnly", .bool(true))]))
        app["volumeMounts"] = .array(mounts.map { .object($0) })
        containers[0] = app
    }

    /// `sidecar install-to`: copies the sidecar binary into the volume the app's `sidecar run-app` runs from.
    private func binContainer() -> KubeObject {
        KubeObject([
            ("name", .string(Self.binName)),
            ("image", .string(settings.image)),
            ("command", .array([.string("sidecar"), .string("install-to"), .string(Self.binDir)])),
            ("resources", Self.resources(cpu: "10m", memory: "16Mi", memoryLimit: "64Mi")),
            ("securityContext", .object(KubeObject([
                ("runAsUser", .int(Int(CaptureDefaults.proxyUID))), ("runAsGroup", .int(Int(CaptureDefaults.proxyGID))),
                ("runAsNonRoot", .bool(true)), ("privileged", .bool(false)), ("allowPrivilegeEscalation", .bool(false)),
                ("readOnlyRootFilesystem", .bool(true)), ("capabilities", .object(KubeObject([("drop", .array([.string("ALL")]))]))),
            ]))),
            ("volumeMounts", .array([.object(KubeObject([("name", .string(Self.binName)), ("mountPath", .string(Self.binDir))]))])),
        ])
    }

    /// `sidecar-init apply`, as root with NET_ADMIN and NET_RAW and nothing else.
    private func captureContainer(_ o: PodInjectionOptions) -> KubeObject {
        var env: [(String, String)] = [("PILOTFISH_MODE", o.interceptionMode.rawValue)]
        if let v = o.includeInboundPorts { env.append(("PILOTFISH_INCLUDE_INBOUND_PORTS", v)) }
        if let v = o.excludeInboundPorts { env.append(("PILOTFISH_EXCLUDE_INBOUND_PORTS", v)) }
        if let v = o.excludeOutboundPorts { env.append(("PILOTFISH_EXCLUDE_OUTBOUND_PORTS", v)) }
        if let v = o.excludeOutboundCIDRs { env.append(("PILOTFISH_EXCLUDE_OUTBOUND_CIDRS", v)) }
        return KubeObject([
            ("name", .string(Self.initName)),
            ("image", .string(settings.image)),
            ("command", .array([.string("sidecar-init"), .string("apply")])),
            ("env", Self.env(env)),
            ("resources", Self.resources(cpu: "10m", memory: "16Mi", memoryLimit: "64Mi")),
            ("securityContext", .object(KubeObject([
                ("runAsUser", .int(0)), ("runAsGroup", .int(0)), ("runAsNonRoot", .bool(false)),
                ("privileged", .bool(false)), ("allowPrivilegeEscalation", .bool(false)),
                ("readOnlyRootFilesystem", .bool(true)),
                ("capabilities", .object(KubeObject([
                    ("add", .array([.string("NET_ADMIN"), .string("NET_RAW")])), ("drop", .array([.string("ALL")])),
                ]))),
            ]))),
        ])
    }

    /// The sidecar: `sidecar --pod-defaults`, non-root and read-only, ready when `/healthz/ready` answers.
    private func proxyContainer(_ o: PodInjectionOptions, identityVolume: String?, probes: [(String, KubeValue)])
        -> KubeObject {
        let health = Int(CaptureDefaults.readinessPort)
        var env: [(String, String)] = [
            ("PILOTFISH_POD_DEFAULTS", "1"),
            ("PILOTFISH_CAPTURE_MODE", o.interceptionMode.rawValue),
            ("PILOTFISH_MTLS", o.mtls.rawValue),
        ]
        if identityVolume != nil {
            env.append(("PILOTFISH_IDENTITY_DIR", Self.identityDir))
            env.append(("PILOTFISH_SECRET_DIR", Self.secretDir))
            if !o.meshCIDRs.isEmpty { env.append(("PILOTFISH_MESH_CIDRS", o.meshCIDRs.joined(separator: ","))) }
        }
        if !probes.isEmpty {
            env.append((ProbeRewrite.environmentVariable, KubeValue.object(KubeObject(probes)).json))
        }
        func probe(period: Int, failures: Int) -> KubeValue {
            .object(KubeObject([
                ("httpGet", .object(KubeObject([("path", .string("/healthz/ready")), ("port", .int(health))]))),
                ("periodSeconds", .int(period)), ("timeoutSeconds", .int(3)), ("failureThreshold", .int(failures)),
            ]))
        }
        var mounts: [KubeValue] = [.object(KubeObject([
            ("name", .string(Self.runVolume)), ("mountPath", .string(Self.secretDir)),
        ]))]
        if let identityVolume {
            mounts.append(.object(KubeObject([
                ("name", .string(identityVolume)), ("mountPath", .string(Self.identityDir)), ("readOnly", .bool(true)),
            ])))
        }
        var capabilities = KubeObject([("drop", .array([.string("ALL")]))])
        // TPROXY: the sidecar accepts connections for any address (IP_TRANSPARENT), which takes NET_ADMIN.
        if o.interceptionMode == .tproxy { capabilities = KubeObject([("add", .array([.string("NET_ADMIN")]))] + capabilities.pairs.map { ($0.key, $0.value) }) }
        return KubeObject([
            ("name", .string(Self.proxyName)),
            ("image", .string(settings.image)),
            ("command", .array([.string("sidecar")])),
            ("args", .array(["--log-level", o.logLevel, "--drain-time-s", "5"].map { .string($0) })),
            ("env", Self.env(env)),
            ("ports", .array([.object(KubeObject([
                ("name", .string("pf-health")), ("containerPort", .int(health)), ("protocol", .string("TCP")),
            ]))])),
            ("startupProbe", probe(period: 1, failures: 600)),
            ("readinessProbe", probe(period: 15, failures: 4)),
            ("resources", Self.resources(cpu: o.proxyCPU, memory: o.proxyMemory, memoryLimit: o.proxyMemoryLimit)),
            ("securityContext", .object(KubeObject([
                ("runAsUser", .int(Int(CaptureDefaults.proxyUID))), ("runAsGroup", .int(Int(CaptureDefaults.proxyGID))),
                ("runAsNonRoot", .bool(true)), ("privileged", .bool(false)), ("allowPrivilegeEscalation", .bool(false)),
                ("readOnlyRootFilesystem", .bool(true)), ("capabilities", .object(capabilities)),
            ]))),
            ("volumeMounts", .array(mounts)),
        ])
    }

    private static func env(_ pairs: [(String, String)]) -> KubeValue {
        .array(pairs.map { .object(KubeObject([("name", .string($0.0)), ("value", .string($0.1))])) })
    }

    private static func resources(cpu: String, memory: String, memoryLimit: String) -> KubeValue {
        .object(KubeObject([
            ("requests", .object(KubeObject([("cpu", .string(cpu)), ("memory", .string(memory))]))),
            ("limits", .object(KubeObject([("memory", .string(memoryLimit))]))),
        ]))
    }

    /// A list of maps (absent: empty).
    static func objects(_ value: KubeValue?, at path: String) throws -> [KubeObject] {
        guard let value, value != .null else { return [] }
        guard let a = value.array else { throw ManifestError("\(path): expected a list") }
        return try a.enumerated().map { i, v in
            guard let o = v.object else { throw ManifestError("\(path)[\(i)]: expected a map") }
            return o
        }
    }
}
