import Foundation
import MeshCapture

/// What the injector was started with (`sidecar inject` / `sidecar webhook` flags): the defaults a pod's annotations
/// may override.
public struct InjectorSettings: Sendable, Equatable {
    /// The image holding `sidecar` and `sidecar-init`.
    public var image: String
    /// Put the sidecar in `initContainers` with `restartPolicy: Always` (Kubernetes' native sidecars, on by default
    /// since 1.29), else first in `containers`.
    public var nativeSidecars = true
    public var interceptionMode = InterceptionMode.redirect
    public var mtls = MTLSMode.disable
    /// Destinations that have a sidecar (the cluster's pod CIDRs): with mTLS on, the sidecar originates mTLS to them.
    public var meshCIDRs: [String] = []
    public var logLevel = "warning"
    public var proxyCPU = "100m"
    public var proxyMemory = "64Mi"
    public var proxyMemoryLimit = "256Mi"
    /// The version written into the status annotation.
    public var version: String

    public init(image: String, version: String) {
        self.image = image
        self.version = version
    }
}

public enum InterceptionMode: String, Sendable, Equatable, CaseIterable {
    case redirect, tproxy

    /// A flag's or annotation's value, in any case (Istio writes `TPROXY`).
    public init?(text: String) { self.init(rawValue: text.lowercased()) }
    public static let choices = "redirect or tproxy"
}

public enum MTLSMode: String, Sendable, Equatable, CaseIterable {
    case strict = "STRICT", permissive = "PERMISSIVE", disable = "DISABLE"

    /// A flag's or annotation's value, in any case.
    public init?(text: String) { self.init(rawValue: text.uppercased()) }
    public static let choices = "STRICT, PERMISSIVE or DISABLE"
}

/// One pod's injection choices: the injector's settings as the pod's annotations change them. Pilotfish's
/// annotations (`pilotfish.io/…`) win over Istio's (`sidecar.istio.io/…`, `traffic.sidecar.istio.io/…`), which are
/// accepted so that manifests written for Istio keep their meaning.
public struct PodInjectionOptions: Sendable, Equatable {
    public var nativeSidecar: Bool
    public var interceptionMode: InterceptionMode
    public var mtls: MTLSMode
    public var meshCIDRs: [String]
    public var includeInboundPorts: String?
    public var excludeInboundPorts: String?
    public var excludeOutboundPorts: String?
    public var excludeOutboundCIDRs: String?
    public var logLevel: String
    public var proxyCPU: String
    public var proxyMemory: String
    public var proxyMemoryLimit: String
    public var rewriteProbes: Bool
    /// A volume of the pod (CSI or projected) holding tls.crt, tls.key and ca.crt, instead of the Secret named after
    /// the service account.
    public var identityVolume: String?

    /// The annotations Pilotfish reads, each with the Istio names it also takes.
    public enum Key: String, CaseIterable, Sendable {
        case inject = "pilotfish.io/inject"
        case interceptionMode = "pilotfish.io/interception-mode"
        case includeInboundPorts = "pilotfish.io/include-inbound-ports"
        case excludeInboundPorts = "pilotfish.io/exclude-inbound-ports"
        case excludeOutboundPorts = "pilotfish.io/exclude-outbound-ports"
        case excludeOutboundCIDRs = "pilotfish.io/exclude-outbound-ip-ranges"
        case mtls = "pilotfish.io/mtls-mode"
        case meshCIDRs = "pilotfish.io/mesh-cidrs"
        case logLevel = "pilotfish.io/log-level"
        case proxyCPU = "pilotfish.io/proxy-cpu"
        case proxyMemory = "pilotfish.io/proxy-memory"
        case proxyMemoryLimit = "pilotfish.io/proxy-memory-limit"
        case nativeSidecar = "pilotfish.io/native-sidecar"
        case rewriteProbes = "pilotfish.io/rewrite-app-probes"
        case identityVolume = "pilotfish.io/identity-volume"

        public var istioAliases: [String] {
            switch self {
            case .inject: return ["sidecar.istio.io/inject"]
            case .interceptionMode: return ["sidecar.istio.io/interceptionMode"]
            case .includeInboundPorts: return ["traffic.sidecar.istio.io/includeInboundPorts"]
            case .excludeInboundPorts: return ["traffic.sidecar.istio.io/excludeInboundPorts"]
            case .excludeOutboundPorts: return ["traffic.sidecar.istio.io/excludeOutboundPorts"]
            case .excludeOutboundCIDRs: return ["traffic.sidecar.istio.io/excludeOutboundIPRanges"]
            case .logLevel: return ["sidecar.istio.io/logLevel"]
            case .proxyCPU: return ["sidecar.istio.io/proxyCPU"]
            case .proxyMemory: return ["sidecar.istio.io/proxyMemory"]
            case .proxyMemoryLimit: return ["sidecar.istio.io/proxyMemoryLimit"]
            case .nativeSidecar: return ["sidecar.istio.io/nativeSidecar"]
            case .rewriteProbes: return ["sidecar.istio.io/rewriteAppHTTPProbers"]
            case .mtls, .meshCIDRs, .identityVolume: return []
            }
        }
    }

    /// The value of `key` on a pod: its annotation (Pilotfish's name, then Istio's), else for `inject` its label.
    /// Returns the value and the name it was found under, for errors.
    static func lookup(_ key: Key, annotations: KubeObject?, labels: KubeObject?) -> (value: String, name: String)? {
        for name in [key.rawValue] + key.istioAliases {
            if let v = annotations?[name]?.string { return (v, name) }
        }
        if key == .inject {
            for name in [key.rawValue] + key.istioAliases {
                if let v = labels?[name]?.string { return (v, name) }
            }
        }
        return nil
    }

    /// The pod opted out (`inject: "false"` as an annotation or label).
    static func optedOut(annotations: KubeObject?, labels: KubeObject?) -> Bool {
        guard let v = lookup(.inject, annotations: annotations, labels: labels) else { return false }
        return ["false", "no", "disabled", "0"].contains(v.value.lowercased())
    }

    /// The options for a pod whose template metadata carries `annotations`; a bad annotation value is an error that
    /// names the annotation and the values it takes.
    init(settings: InjectorSettings, annotations: KubeObject?, at path: String) throws {
        func value(_ key: Key) -> (value: String, name: String)? { Self.lookup(key, annotations: annotations, labels: nil) }
        func bool(_ key: Key, _ fallback: Bool) throws -> Bool {
            guard let (v, name) = value(key) else { return fallback }
            switch v.lowercased() {
            case "true", "yes", "1", "enabled": return true
            case "false", "no", "0", "disabled": return false
            default: throw ManifestError("\(path).annotations[\(name)]: '\(v)' is not true or false")
            }
        }
        func list(_ key: Key, validate: (String) -> Bool, what: String) throws -> String? {
            guard let (v, name) = value(key) else { return nil }
            let items = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            for item in items where !validate(item) {
                throw ManifestError("\(path).annotations[\(name)]: '\(item)' is not \(what)")
            }
            return items.joined(separator: ",")
        }
        nativeSidecar = try bool(.nativeSidecar, settings.nativeSidecars)
        rewriteProbes = try bool(.rewriteProbes, true)
        if let (v, name) = value(.interceptionMode) {
            guard let m = InterceptionMode(text: v) else {
                throw ManifestError("\(path).annotations[\(name)]: '\(v)' is not \(InterceptionMode.choices)")
            }
            interceptionMode = m
        } else {
            interceptionMode = settings.interceptionMode
        }
        if let (v, name) = value(.mtls) {
            guard let m = MTLSMode(text: v) else {
                throw ManifestError("\(path).annotations[\(name)]: '\(v)' is not \(MTLSMode.choices)")
            }
            mtls = m
        } else {
            mtls = settings.mtls
        }
        let port: (String) -> Bool = { UInt16($0).map { $0 > 0 } ?? false }
        includeInboundPorts = try list(.includeInboundPorts, validate: { $0 == "*" || port($0) }, what: "a port or *")
        excludeInboundPorts = try list(.excludeInboundPorts, validate: port, what: "a port")
        excludeOutboundPorts = try list(.excludeOutboundPorts, validate: port, what: "a port")
        excludeOutboundCIDRs = try list(.excludeOutboundCIDRs, validate: Self.isValidCIDR, what: "an IP range (CIDR)")
        meshCIDRs = try list(.meshCIDRs, validate: Self.isValidCIDR, what: "an IP range (CIDR)")?
            .split(separator: ",").map(String.init) ?? settings.meshCIDRs
        if let (v, name) = value(.logLevel) {
            let levels = ["trace", "debug", "info", "warning", "warn", "error", "critical", "off"]
            guard levels.contains(v.lowercased()) else {
                throw ManifestError("\(path).annotations[\(name)]: '\(v)' is not one of \(levels.joined(separator: ", "))")
            }
            logLevel = v.lowercased() == "warn" ? "warning" : v.lowercased()
        } else {
            logLevel = settings.logLevel
        }
        proxyCPU = value(.proxyCPU)?.value ?? settings.proxyCPU
        proxyMemory = value(.proxyMemory)?.value ?? settings.proxyMemory
        proxyMemoryLimit = value(.proxyMemoryLimit)?.value ?? settings.proxyMemoryLimit
        for (key, v) in [(Key.proxyCPU, proxyCPU), (.proxyMemory, proxyMemory), (.proxyMemoryLimit, proxyMemoryLimit)]
        where !Self.isQuantity(v) {
            throw ManifestError("\(path).annotations[\(key.rawValue)]: '\(v)' is not a Kubernetes quantity")
        }
        identityVolume = value(.identityVolume)?.value
    }

    public static func isValidCIDR(_ s: String) -> Bool {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let bits = Int(parts[1]) else { return false }
        let addr = String(parts[0])
        if addr.contains(":") { return bits >= 0 && bits <= 128 && addr.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." } }
        let octets = addr.split(separator: ".", omittingEmptySubsequences: false)
        return bits >= 0 && bits <= 32 && octets.count == 4 && octets.allSatisfy { UInt8($0) != nil }
    }

    /// A Kubernetes resource quantity (`100m`, `64Mi`, `1.5`, `2G`).
    static func isQuantity(_ s: String) -> Bool {
        let suffixes = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "m", "k", "M", "G", "T", "P", "E", ""]
        for suffix in suffixes where s.hasSuffix(suffix) {
            let number = s.dropLast(suffix.count)
            if !number.isEmpty, Double(number) != nil, !number.hasPrefix("-"), !number.hasPrefix("+") { return true }
        }
        return false
    }
}
