import Foundation

/// `sidecar webhook`'s work: an AdmissionReview (admission.k8s.io/v1) for a Pod in, the AdmissionReview answer
/// out, with the injection as a JSON Patch. Pure: the HTTPS server around it is `InjectionWebhookServer`.
public struct AdmissionReviewHandler: Sendable {
    public var injector: PodInjector
    public init(settings: InjectorSettings) { injector = PodInjector(settings: settings) }

    /// The request was not an AdmissionReview this webhook can answer: an HTTP 400 with the message.
    public struct BadReview: Error, Equatable {
        public var message: String
    }

    /// What the webhook did, for its log line.
    public enum Decision: Equatable, Sendable {
        case injected(patchOperations: Int)
        case skipped(String)
        /// The pod's annotations are wrong: the pod is refused with this message.
        case refused(String)
    }

    /// Answers one AdmissionReview body.
    public func review(_ body: String) throws(BadReview) -> (response: String, decision: Decision, pod: String) {
        let root: KubeObject
        do {
            let docs = try KubeValue.documents(body)
            guard docs.count == 1, let o = docs[0].object else { throw BadReview(message: "the body is not one JSON object") }
            root = o
        } catch let e as BadReview {
            throw e
        } catch {
            throw BadReview(message: "the body is not JSON: \(error)")
        }
        guard root["kind"]?.string == "AdmissionReview" else {
            throw BadReview(message: "kind: expected AdmissionReview, got \(root["kind"]?.json ?? "nothing")")
        }
        let apiVersion = root["apiVersion"]?.string ?? ""
        guard apiVersion == "admission.k8s.io/v1" else {
            throw BadReview(message: "apiVersion: expected admission.k8s.io/v1, got '\(apiVersion)'")
        }
        guard let request = root["request"]?.object else { throw BadReview(message: "request: missing") }
        guard let uid = request["uid"]?.string, !uid.isEmpty else { throw BadReview(message: "request.uid: missing") }
        guard let object = request["object"], var pod = object.object else {
            throw BadReview(message: "request.object: missing")
        }
        let kind = request["kind"]?.object?["kind"]?.string ?? pod["kind"]?.string
        guard kind == "Pod" else {
            // Only pods are selected (the MutatingWebhookConfiguration's rules); anything else is allowed untouched.
            return (Self.answer(uid: uid, patch: nil), .skipped("not a Pod (\(kind ?? "no kind"))"), "")
        }
        let namespace = request["namespace"]?.string ?? pod["metadata"]?.object?["namespace"]?.string ?? ""
        let podName = pod["metadata"]?.object?["name"]?.string ?? pod["metadata"]?.object?["generateName"]?.string ?? ""
        let described = "\(namespace)/\(podName)"
        var metadata = pod["metadata"]?.object ?? KubeObject()
        guard var spec = pod["spec"]?.object else { throw BadReview(message: "request.object.spec: missing") }
        let outcome: PodInjector.Outcome
        do {
            outcome = try injector.inject(metadata: &metadata, spec: &spec, at: "pod \(described)")
        } catch let e as ManifestError {
            return (Self.answer(uid: uid, refusal: "pilotfish injection: \(e.message)"), .refused(e.message), described)
        } catch {
            return (Self.answer(uid: uid, refusal: "pilotfish injection: \(error)"), .refused("\(error)"), described)
        }
        guard outcome == .injected else {
            if case .skipped(let why) = outcome { return (Self.answer(uid: uid, patch: nil), .skipped(why), described) }
            return (Self.answer(uid: uid, patch: nil), .skipped(""), described)
        }
        pod["metadata"] = .object(metadata)
        pod["spec"] = .object(spec)
        let patch = JSONPatch.diff(from: object, to: .object(pod))
        return (Self.answer(uid: uid, patch: patch), .injected(patchOperations: patch.array?.count ?? 0), described)
    }

    static func answer(uid: String, patch: KubeValue?) -> String {
        var response = KubeObject([("uid", .string(uid)), ("allowed", .bool(true))])
        if let patch {
            response["patchType"] = .string("JSONPatch")
            response["patch"] = .string(Data(patch.json.utf8).base64EncodedString())
        }
        return envelope(response)
    }

    static func answer(uid: String, refusal: String) -> String {
        envelope(KubeObject([
            ("uid", .string(uid)), ("allowed", .bool(false)),
            ("status", .object(KubeObject([("code", .int(400)), ("message", .string(refusal))]))),
        ]))
    }

    private static func envelope(_ response: KubeObject) -> String {
        KubeValue.object(KubeObject([
            ("apiVersion", .string("admission.k8s.io/v1")), ("kind", .string("AdmissionReview")),
            ("response", .object(response)),
        ])).json
    }
}
