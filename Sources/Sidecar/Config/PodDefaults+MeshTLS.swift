import Foundation
import X509
import SidecarCore
import SidecarUpstream

extension PodDefaults.MeshTLS {
    public struct SetupError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The mTLS settings of `sidecar --pod-defaults --mtls MODE`, flags first, then the environment
    /// (PILOTFISH_MTLS, PILOTFISH_IDENTITY_DIR, PILOTFISH_MESH_CIDRS, PILOTFISH_SECRET_DIR). nil when mTLS is off.
    /// The trust domain is the one in the pod's own certificate (its SPIFFE ID), so it cannot disagree.
    public static func resolve(mode: String?, identityDirectory: String?, meshCIDRs: String?, secretDirectory: String?,
                               environment: [String: String]) throws -> PodDefaults.MeshTLS? {
        let modeText = (mode ?? environment["PILOTFISH_MTLS"] ?? "DISABLE").uppercased()
        if modeText == "DISABLE" || modeText == "OFF" { return nil }
        guard let m = Mode(rawValue: modeText) else {
            throw SetupError(description: "unknown --mtls mode '\(modeText)'; use STRICT, PERMISSIVE or DISABLE")
        }
        let dir = identityDirectory ?? environment["PILOTFISH_IDENTITY_DIR"] ?? "/etc/pilotfish/identity"
        let cidrText = meshCIDRs ?? environment["PILOTFISH_MESH_CIDRS"] ?? ""
        let cidrs = cidrText.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for c in cidrs {
            let parts = c.split(separator: "/")
            guard parts.count <= 2, CIDRRange(address: String(parts[0]), prefixLength: parts.count == 2 ? Int(parts[1]) : nil) != nil else {
                throw SetupError(description: "--mesh-cidrs: '\(c)' is not a CIDR range")
            }
        }
        if cidrs.isEmpty {
            throw SetupError(description: "--mtls needs --mesh-cidrs (or PILOTFISH_MESH_CIDRS): the destinations that have a sidecar, where outbound connections originate mTLS")
        }
        for f in ["tls.crt", "tls.key", "ca.crt"] where !FileManager.default.isReadableFile(atPath: "\(dir)/\(f)") {
            throw SetupError(description: "--mtls: identity file \(dir)/\(f) is missing or unreadable; issue one with `sidecar certs workload --out \(dir) ...`")
        }
        let pem = String(decoding: FileManager.default.contents(atPath: "\(dir)/tls.crt") ?? Data(), as: UTF8.self)
        guard let cert = try? TLSMaterial.parseCertificates(pem).first,
            let sans = try? cert.extensions.subjectAlternativeNames,
            let spiffe = sans.lazy.compactMap({ n -> String? in
                if case .uniformResourceIdentifier(let u) = n, u.hasPrefix("spiffe://") { return u }
                return nil
            }).first
        else {
            throw SetupError(description: "--mtls: \(dir)/tls.crt has no spiffe:// URI SAN; issue it with `sidecar certs workload`")
        }
        let trustDomain = String(spiffe.dropFirst("spiffe://".count).prefix { $0 != "/" })
        let secrets = secretDirectory ?? environment["PILOTFISH_SECRET_DIR"] ?? "/run/pilotfish"
        return PodDefaults.MeshTLS(
            mode: m, identityDirectory: dir, secretDirectory: secrets, trustDomain: trustDomain, meshCIDRs: cidrs)
    }

    /// Writes the SDS files the generated config names (atomically: a rename over the old file).
    public func writeSecretFiles() throws {
        do {
            try FileManager.default.createDirectory(atPath: secretDirectory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            for (path, contents) in PodDefaults.secretFiles(self) {
                let tmp = path + ".tmp"
                try Data(contents.utf8).write(to: URL(fileURLWithPath: tmp))
                if rename(tmp, path) != 0 { throw SetupError(description: "cannot rename \(tmp) to \(path): errno \(errno)") }
            }
        } catch let e as SetupError {
            throw e
        } catch {
            throw SetupError(description: "cannot write the SDS files into \(secretDirectory): \(error)")
        }
    }
}
