import Foundation
import NIOConcurrencyHelpers
import SidecarCore
import SidecarUpstream

/// Secrets from control planes: SDS over the ADS stream (`sds_config: {ads: {}}`) or over a SecretDiscoveryService
/// stream of its own (`sds_config.api_config_source`), by name and source, as Envoy keys its SDS subscriptions.
///
/// A TLS context that names one is built once it arrives; until then its connections fail, as Envoy's not-ready TLS
/// sockets do (a listener from LDS warms instead, see `DynamicConfig`). An update is checked first by building
/// every context that names a changed secret with it: one that does not build refuses the whole response (the
/// NACK names the context and why) and nothing changes. Accepted, the secrets are kept and those contexts rebuilt,
/// so the next handshakes use them; connections already up keep theirs.
final class SecretDiscovery: Sendable {
    struct Entry: Sendable {
        var secret: SecretFile.Secret
        /// The response's version (state of the world) or the resource's own (delta), as /config_dump shows it.
        var versionInfo: String
        /// When its content last changed.
        var updated: Date
        /// The resource as delivered, in Envoy's JSON form (the private key redacted by /config_dump).
        var document: String
    }

    private let entries = NIOLockedValueBox<[SDSSecretReference: Entry]>([:])
    /// `sds.<name>.*`, one set per secret name (Envoy's SdsApi scope).
    private let counters = NIOLockedValueBox<[String: SubscriptionCounters]>([:])
    private let registry: StatsRegistry

    init(registry: StatsRegistry) {
        self.registry = registry
    }

    /// The secrets delivered, for building TLS contexts.
    var secrets: [SDSSecretReference: SecretFile.Secret] { entries.withLockedValue { $0.mapValues(\.secret) } }

    /// The secrets delivered, with their versions (/config_dump).
    var active: [SDSSecretReference: Entry] { entries.withLockedValue { $0 } }

    func has(_ ref: SDSSecretReference) -> Bool { entries.withLockedValue { $0[ref] != nil } }

    /// The counters of `name`, registered the first time a secret of that name is wanted.
    @discardableResult
    func counters(for name: String) -> SubscriptionCounters {
        counters.withLockedValue { all in
            if let c = all[name] { return c }
            let c = SubscriptionCounters()
            c.register(scope: "sds.\(name)", in: registry, empty: false, reload: false)
            all[name] = c
            return c
        }
    }

    /// A response from `source` (decoded, or why not). `wanted`: the secrets some TLS context names now (others in
    /// the response are ignored, as Envoy's watches ignore what no one asked for); `providers`: every TLS context
    /// in use. Returns why it was refused (the NACK's error_detail), and whether any secret changed. Callers
    /// serialize this with the installs that make TLS contexts, so that none is built between the check and the
    /// swap.
    func apply(_ decoded: Result<DiscoveryFile<SecretResource>, Error>, from source: ConfigSource,
               wanted: Set<SDSSecretReference>, providers: [TLSContextProvider]) -> (refused: String?, changed: Bool) {
        let mine = wanted.filter { $0.source == source }
        let file: DiscoveryFile<SecretResource>
        switch decoded {
        case .failure(let error):
            for ref in mine {
                let c = counters(for: ref.name)
                c.attempt.wrappingIncrement(ordering: .relaxed)
                c.rejected.wrappingIncrement(ordering: .relaxed)
            }
            return ("\(error)", false)
        case .success(let f):
            file = f
        }
        let current = active
        var next: [SDSSecretReference: Entry] = [:]
        for (i, r) in file.resources.enumerated() {
            let ref = SDSSecretReference(name: r.name, source: source)
            guard mine.contains(ref) else { continue }
            let version = file.resourceVersions?[i] ?? file.versionInfo
            let updated = current[ref].flatMap { $0.secret == r.secret ? $0.updated : nil } ?? Date()
            next[ref] = Entry(secret: r.secret, versionInfo: version, updated: updated,
                              document: file.documents.indices.contains(i) ? file.documents[i] : "")
        }
        for ref in next.keys { counters(for: ref.name).attempt.wrappingIncrement(ordering: .relaxed) }
        let changed = Set(next.filter { current[$0.key]?.secret != $0.value.secret }.keys)
        var trial = current.mapValues(\.secret)
        for (ref, entry) in next { trial[ref] = entry.secret }
        let affected = providers.filter { !changed.isDisjoint(with: $0.secretReferences) }
        for p in affected {
            do {
                try p.check(secrets: trial)
            } catch is TLSMaterial.SecretNotReady {
                continue  // it waits for another secret too; built once that one arrives
            } catch {
                for ref in next.keys { counters(for: ref.name).rejected.wrappingIncrement(ordering: .relaxed) }
                return ("\(p.owner): \(error)", false)
            }
        }
        entries.withLockedValue { for (ref, entry) in next { $0[ref] = entry } }
        for p in affected {
            do {
                let s = try p.load(secrets: trial)
                Log.info("sds: TLS context updated", [("context", p.owner), ("serial", s.certificateSerial ?? "-")])
            } catch is TLSMaterial.SecretNotReady {
                // It waits for another secret too (checked above).
            } catch {
                // Built a moment ago with the same secrets; a file it also names may have changed since.
                Log.warning("sds: TLS context not rebuilt; it keeps the one it had", [("context", p.owner), ("error", "\(error)")])
            }
        }
        let now = Int(Date().timeIntervalSince1970 * 1000)
        for ref in next.keys {
            let c = counters(for: ref.name)
            c.success.wrappingIncrement(ordering: .relaxed)
            c.updateTime.store(now, ordering: .relaxed)
        }
        return (nil, !changed.isEmpty)
    }
}

/// An `envoy.extensions.transport_sockets.tls.v3.Secret` from a control plane.
struct SecretResource: Sendable {
    var name: String
    var secret: SecretFile.Secret

    static func decode(_ value: ConfigValue) throws -> SecretResource {
        let o = try value.object()
        guard let (name, secret) = try SecretFile.resource(o) else {
            throw value.error("a secret needs tls_certificate or validation_context")
        }
        return SecretResource(name: name, secret: secret)
    }
}
