import Foundation

/// RFC 6902 JSON Patch operations that turn one object into another, as an admission webhook answers: keys are
/// added, removed or replaced where they differ; a list whose length changed is replaced whole (injection puts
/// containers at the front, which per-index operations would only obscure).
public enum JSONPatch {
    public static func diff(from a: KubeValue, to b: KubeValue) -> KubeValue {
        var ops: [KubeValue] = []
        diff(a, b, path: "", into: &ops)
        return .array(ops)
    }

    private static func diff(_ a: KubeValue, _ b: KubeValue, path: String, into ops: inout [KubeValue]) {
        if a == b { return }
        switch (a, b) {
        case (.object(let x), .object(let y)):
            for key in x.keys where y[key] == nil {
                ops.append(op("remove", "\(path)/\(escape(key))"))
            }
            for (key, value) in y.pairs {
                if let old = x[key] {
                    diff(old, value, path: "\(path)/\(escape(key))", into: &ops)
                } else {
                    ops.append(op("add", "\(path)/\(escape(key))", value))
                }
            }
        case (.array(let x), .array(let y)) where x.count == y.count:
            for i in x.indices { diff(x[i], y[i], path: "\(path)/\(i)", into: &ops) }
        default:
            ops.append(op("replace", path, b))
        }
    }

    private static func op(_ name: String, _ path: String, _ value: KubeValue? = nil) -> KubeValue {
        var o = KubeObject([("op", .string(name)), ("path", .string(path))])
        if let value { o["value"] = value }
        return .object(o)
    }

    /// A JSON Pointer token: `~` is `~0`, `/` is `~1` (annotation keys hold slashes).
    static func escape(_ key: String) -> String {
        key.replacingOccurrences(of: "~", with: "~0").replacingOccurrences(of: "/", with: "~1")
    }
}
