import Foundation
import Injection
import Testing

/// What injection decides for one pod, and the errors that name what is wrong and where.
struct InjectionTests {
    static let settings = InjectorSettings(image: "img:1", version: "test")

    static func pod(annotations: String = "", spec: String = "containers: [{name: app, image: app:1}]") -> String {
        """
        apiVersion: v1
        kind: Pod
        metadata:
          name: p
          annotations: {\(annotations)}
        spec:
          \(spec)
        """
    }

    static func inject(_ text: String, _ settings: InjectorSettings = settings) throws -> KubeObject {
        let (yaml, _) = try ManifestInjector(settings: settings).inject(text: text)
        return try #require(try KubeValue.documents(yaml).first?.object)
    }

    static func error(_ text: String) -> String {
        do {
            _ = try ManifestInjector(settings: settings).inject(text: text)
            return "no error"
        } catch let e as ManifestError {
            return e.message
        } catch {
            return "\(error)"
        }
    }

    static func names(_ v: KubeValue?) -> [String] { v?.array?.compactMap { $0.object?["name"]?.string } ?? [] }

    @Test func nativeSidecarComesAfterTheCaptureContainerAndBeforeTheAppsInitContainers() throws {
        let p = try Self.inject(Self.pod(spec: "initContainers: [{name: setup, image: s:1}]\n  containers: [{name: app, image: app:1}]"))
        let spec = try #require(p["spec"]?.object)
        #expect(Self.names(spec["initContainers"]) == ["pilotfish-init", "pilotfish-proxy", "setup"])
        #expect(Self.names(spec["containers"]) == ["app"])
        let proxy = try #require(spec["initContainers"]?.array?[1].object)
        #expect(proxy["restartPolicy"] == .string("Always"))
        // mTLS off by default: no identity volume.
        #expect(Self.names(spec["volumes"]) == ["pilotfish-run"])
    }

    @Test func classicSidecarIsTheFirstContainerAndWaitsToBeReady() throws {
        var settings = Self.settings
        settings.nativeSidecars = false
        let spec = try #require(try Self.inject(Self.pod(), settings)["spec"]?.object)
        #expect(Self.names(spec["initContainers"]) == ["pilotfish-init"])
        #expect(Self.names(spec["containers"]) == ["pilotfish-proxy", "app"])
        let proxy = try #require(spec["containers"]?.array?[0].object)
        #expect(proxy["restartPolicy"] == nil)
        #expect(proxy["lifecycle"]?.json.contains("wait-ready") == true)
    }

    @Test func captureContainerHasOnlyNetAdminAndNetRaw() throws {
        let spec = try #require(try Self.inject(Self.pod(annotations: "pilotfish.io/interception-mode: tproxy"))["spec"]?.object)
        let initC = try #require(spec["initContainers"]?.array?[0].object)
        let caps = initC["securityContext"]?.object?["capabilities"]?.json
        #expect(caps == #"{"add":["NET_ADMIN","NET_RAW"],"drop":["ALL"]}"#)
        #expect(initC["env"]?.json.contains(#"{"name":"PILOTFISH_MODE","value":"tproxy"}"#) == true)
        // TPROXY: the sidecar binds transparently, which takes NET_ADMIN; nothing else.
        let proxy = try #require(spec["initContainers"]?.array?[1].object)
        #expect(proxy["securityContext"]?.object?["capabilities"]?.json == #"{"add":["NET_ADMIN"],"drop":["ALL"]}"#)
        #expect(proxy["securityContext"]?.object?["runAsUser"] == .int(1337))
        #expect(proxy["securityContext"]?.object?["readOnlyRootFilesystem"] == .bool(true))
    }

    @Test func pilotfishAnnotationsWinOverIstios() throws {
        let spec = try #require(try Self.inject(Self.pod(
            annotations: "pilotfish.io/interception-mode: redirect, sidecar.istio.io/interceptionMode: TPROXY"))["spec"]?.object)
        #expect(spec["initContainers"]?.array?[0].object?["env"]?.json.contains(#""value":"redirect""#) == true)
    }

    @Test func strictMTLSMountsTheServiceAccountsIdentity() throws {
        let spec = try #require(try Self.inject(Self.pod(
            annotations: "pilotfish.io/mtls-mode: strict",
            spec: "serviceAccountName: api\n  containers: [{name: app, image: app:1}]"))["spec"]?.object)
        #expect(spec["volumes"]?.json.contains(#""secretName":"pilotfish-identity-api""#) == true)
        let env = spec["initContainers"]?.array?[1].object?["env"]?.json ?? ""
        #expect(env.contains(#"{"name":"PILOTFISH_MTLS","value":"STRICT"}"#))
        #expect(env.contains("PILOTFISH_IDENTITY_DIR"))
    }

    @Test func badAnnotationsAreNamed() {
        #expect(Self.error(Self.pod(annotations: "pilotfish.io/interception-mode: nat")).contains(
            "metadata.annotations[pilotfish.io/interception-mode]: 'nat' is not redirect or tproxy"))
        #expect(Self.error(Self.pod(annotations: #"traffic.sidecar.istio.io/excludeOutboundPorts: "80,http""#)).contains(
            "annotations[traffic.sidecar.istio.io/excludeOutboundPorts]: 'http' is not a port"))
        #expect(Self.error(Self.pod(annotations: "pilotfish.io/exclude-outbound-ip-ranges: 10.0.0.0/33")).contains(
            "'10.0.0.0/33' is not an IP range (CIDR)"))
        #expect(Self.error(Self.pod(annotations: "pilotfish.io/proxy-memory: lots")).contains(
            "'lots' is not a Kubernetes quantity"))
        #expect(Self.error(Self.pod(annotations: "pilotfish.io/native-sidecar: maybe")).contains("'maybe' is not true or false"))
        #expect(Self.error(Self.pod(annotations: "pilotfish.io/native-sidecar: false")).contains(
            "metadata.annotations[pilotfish.io/native-sidecar]: false is not a string; Kubernetes takes only strings there"))
        #expect(Self.error(Self.pod(annotations: "pilotfish.io/mtls-mode: STRICT, pilotfish.io/identity-volume: x"))
            .contains("the pod has no volume named 'x'"))
    }

    @Test func podsThatClashWithTheSidecarAreRefused() {
        #expect(Self.error(Self.pod(spec: "containers: [{name: app, image: a, ports: [{containerPort: 15021}]}]"))
            == "document 1 (Pod p).spec.containers[0].ports[0].containerPort: 15021 is in 15000-15090, which the sidecar keeps for itself")
        #expect(Self.error(Self.pod(spec: "containers: [{name: pilotfish-proxy, image: a}]")).contains(
            "a container is already named pilotfish-proxy"))
        #expect(Self.error(Self.pod(spec: "containers: [{name: app, image: a, livenessProbe: {httpGet: {port: web}}}]"))
            .contains("spec.containers[0].livenessProbe.httpGet.port: the container has no port named 'web'"))
    }

    @Test func runToCompletionPodsWithClassicSidecarsNeedOneAppWithACommand() {
        let classic = "pilotfish.io/native-sidecar: \"false\""
        #expect(Self.error(Self.pod(annotations: classic, spec: """
            restartPolicy: Never
              containers: [{name: a, image: a, command: [x]}, {name: b, image: b, command: [y]}]
            """)).contains("needs exactly one app container with a classic (not native) sidecar"))
        #expect(Self.error(Self.pod(annotations: classic, spec: "restartPolicy: Never\n  containers: [{name: a, image: a}]"))
            .contains("spec.containers[0].command: needed for a pod that runs to completion"))
        // A long-running pod (restartPolicy Always) is not wrapped.
        #expect(Self.error(Self.pod(annotations: classic)) == "no error")
    }

    @Test func probesOnAnotherHostOrExecStay() throws {
        let spec = try #require(try Self.inject(Self.pod(spec: """
            containers: [{name: app, image: a, livenessProbe: {httpGet: {host: 10.0.0.1, port: 80}}, \
            readinessProbe: {exec: {command: [true]}}}]
            """))["spec"]?.object)
        let app = try #require(spec["containers"]?.array?[0].object)
        #expect(app["livenessProbe"]?.json == #"{"httpGet":{"host":"10.0.0.1","port":80}}"#)
        #expect(app["readinessProbe"]?.json == #"{"exec":{"command":[true]}}"#)
        #expect(!(spec["initContainers"]?.json.contains("PILOTFISH_APP_PROBES") ?? true))
    }

    @Test func notManifestsAreRefused() {
        #expect(Self.error("- a\n- b").contains("document 1: not a Kubernetes object"))
        #expect(Self.error("apiVersion: v1\nmetadata: {name: x}").contains("document 1: no kind"))
        #expect(Self.error("kind: Deployment\nmetadata: {name: d}\nspec: {replicas: 1}").contains(
            "document 1 (Deployment d).spec.template: missing"))
        #expect(Self.error("{ unclosed").contains("not YAML or JSON"))
    }
}
