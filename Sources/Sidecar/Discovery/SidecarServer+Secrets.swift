import SidecarCore
import SidecarUpstream
import SwiftProtobuf
import XDSMessages

/// Secrets from control planes (see `SecretDiscovery`): which are wanted, and responses installed.
extension SidecarServer {
    /// The secrets from control planes that some TLS context names now (the static resources', every listener's
    /// from LDS and every cluster's from CDS), from `source` (every source when nil). Their `sds.<name>.*` stats
    /// are registered as they are first wanted.
    func wantedSecrets(from source: ConfigSource? = nil) -> Set<SDSSecretReference> {
        var out = Set(bootstrap.tlsContexts.flatMap { $0.config.remoteSecretReferences })
        if let dynamicConfig { out.formUnion(dynamicConfig.dynamicSecretReferences) }
        if let source { out = out.filter { $0.source == source } }
        for ref in out { secretDiscovery.counters(for: ref.name) }
        return out
    }

    /// The wanted secrets that have not arrived.
    var missingSecrets: [SDSSecretReference] {
        wantedSecrets().filter { !secretDiscovery.has($0) }.sorted { $0.name < $1.name }
    }

    /// What /config_dump shows of them (nil when no TLS context names one): those delivered and still wanted, by
    /// name, and the names still awaited.
    var secretsForDump: (active: [(name: String, entry: SecretDiscovery.Entry)], warming: [String])? {
        let wanted = wantedSecrets()
        guard !wanted.isEmpty else { return nil }
        let delivered = secretDiscovery.active
        let active = wanted.compactMap { ref in delivered[ref].map { (name: ref.name, entry: $0) } }
        return (active.sorted { $0.name < $1.name },
                wanted.filter { delivered[$0] == nil }.map(\.name).sorted())
    }

    /// Installs an SDS response from `source` (the ADS stream, or a secret stream of its own): checked against every
    /// TLS context naming a changed secret, then those contexts rebuilt, and the listeners from LDS that waited for
    /// them installed. Returns why it was refused (the NACK's error_detail). Blocks: never on an event loop.
    func applySecrets(_ typeURL: String, _ resources: [Google_Protobuf_Any], _ versionInfo: String,
                      _ resourceVersions: [String]?, from source: ConfigSource) -> String? {
        guard !isDraining else { return nil }
        guard typeURL == DiscoveryResources.secret else {
            return "a secret stream carries \(DiscoveryResources.secret) resources, not \(typeURL)"
        }
        let decoded = Result {
            try XDSResourceDecoding.decode(resources, versionInfo: versionInfo, resourceVersions: resourceVersions,
                                           typeURL: typeURL, what: "SDS", decode: SecretResource.decode, name: \.name)
        }
        let wanted = wantedSecrets()
        // Under the install lock: a TLS context made by an install is built from the secrets as they are before or
        // after this update, never in between.
        let (refused, changed) = installLock.withLock {
            secretDiscovery.apply(decoded, from: source, wanted: wanted, providers: tlsProviders)
        }
        if let refused {
            Log.warning("sds: update refused", [("source", "\(source)"), ("error", refused)])
        } else if changed {
            dynamicConfig?.secretsArrived { try install($0, listenerRevisions: $1) }
        }
        return refused
    }
}
