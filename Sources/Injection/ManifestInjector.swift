/// `sidecar inject`: every pod template in a stream of Kubernetes objects gets the sidecar; anything else passes
/// through as it was. Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs,
/// CronJobs, and `List`s of them.
public struct ManifestInjector: Sendable {
    public var pod: PodInjector
    public init(settings: InjectorSettings) { pod = PodInjector(settings: settings) }

    /// What happened to one pod template, for the report on stderr.
    public struct Report: Equatable, Sendable {
        public var document: Int
        /// `Deployment web`, `Pod reviews-v1`, …
        public var object: String
        public var outcome: PodInjector.Outcome
    }

    /// Where a kind keeps its pod template.
    static func templatePath(kind: String) -> [String]? {
        switch kind {
        case "Pod": return []
        case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job":
            return ["spec", "template"]
        case "CronJob": return ["spec", "jobTemplate", "spec", "template"]
        default: return nil
        }
    }

    /// Injects every document of `text` and returns them as YAML, with what happened to each pod template.
    public func inject(text: String) throws -> (yaml: String, reports: [Report]) {
        let documents = try KubeValue.documents(text)
        var out: [KubeValue] = []
        var reports: [Report] = []
        for (i, d) in documents.enumerated() {
            var d = d
            try inject(&d, document: i + 1, path: "document \(i + 1)", reports: &reports)
            out.append(d)
        }
        return (try KubeValue.yaml(out), reports)
    }

    /// Injects one object (recursing into a `List`'s items).
    public func inject(_ value: inout KubeValue, document: Int, path: String, reports: inout [Report]) throws {
        guard var object = value.object else { throw ManifestError("\(path): not a Kubernetes object (a map)") }
        guard let kind = object["kind"]?.string else { throw ManifestError("\(path): no kind") }
        if kind == "List" || kind.hasSuffix("List") {
            guard var items = object["items"]?.array else { return }
            for i in items.indices {
                try inject(&items[i], document: document, path: "\(path).items[\(i)]", reports: &reports)
            }
            object["items"] = .array(items)
            value = .object(object)
            return
        }
        guard let templatePath = Self.templatePath(kind: kind) else { return }
        let name = object["metadata"]?.object?["name"]?.string ?? object["metadata"]?.object?["generateName"]?.string ?? "?"
        let described = "\(kind) \(name)"
        let at = "\(path) (\(described))" + templatePath.map { ".\($0)" }.joined()
        guard var template = try Self.lookup(object, templatePath, at: path) else {
            throw ManifestError("\(at): missing")
        }
        var metadata = template["metadata"]?.object ?? KubeObject()
        guard var spec = template["spec"]?.object else { throw ManifestError("\(at).spec: missing") }
        let outcome = try pod.inject(metadata: &metadata, spec: &spec, at: at)
        if outcome == .injected {
            template["metadata"] = .object(metadata)
            template["spec"] = .object(spec)
            object = try Self.store(template, in: object, templatePath)
            value = .object(object)
        }
        reports.append(Report(document: document, object: described, outcome: outcome))
    }

    private static func lookup(_ object: KubeObject, _ path: [String], at: String) throws -> KubeObject? {
        var current = object
        var walked = at
        for key in path {
            walked += ".\(key)"
            guard let next = current[key] else { return nil }
            guard let o = next.object else { throw ManifestError("\(walked): expected a map") }
            current = o
        }
        return current
    }

    private static func store(_ template: KubeObject, in object: KubeObject, _ path: [String]) throws -> KubeObject {
        guard let key = path.first else { return template }
        var object = object
        object[key] = .object(try store(template, in: object[key]?.object ?? KubeObject(), Array(path.dropFirst())))
        return object
    }
}
