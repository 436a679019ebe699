import Atomics
import Foundation
import NIOConcurrencyHelpers
import SidecarCore

/// CDS from a file (`dynamic_resources.cds_config.path_config_source`): the clusters of the last accepted file,
/// its version, and the outcome of every attempt, as Envoy's file subscription counts them under
/// `cluster_manager.cds.*`. A file that cannot be read or parsed is a failure (`update_failure`); one whose
/// clusters are refused (a field Pilotfish does not run, a clash with a static cluster, a snapshot that cannot be
/// built) is rejected (`update_rejected`), and the clusters accepted before keep serving.
final class ClusterDiscovery: Sendable {
    let source: FileConfigSource
    private let staticNames: Set<String>
    private let state = NIOLockedValueBox(State())
    private let counters = Counters()

    struct State {
        /// The last accepted file's `version_info`, clusters and their documents.
        var versionInfo = ""
        var clusters: [Cluster] = []
        var documents: [String] = []
        var lastUpdated: Date?
        /// Why the last attempt was refused, when it was; cleared by the next accepted one.
        var lastError: (message: String, at: Date, versionInfo: String?)?
    }

    private final class Counters: Sendable {
        let attempt = ManagedAtomic(0), success = ManagedAtomic(0), rejected = ManagedAtomic(0)
        let failure = ManagedAtomic(0), reload = ManagedAtomic(0), updateTime = ManagedAtomic(0)
    }

    /// `staticNames`: the bootstrap's clusters, which CDS may not replace.
    init(source: FileConfigSource, staticNames: Set<String>, registry: StatsRegistry) {
        self.source = source
        self.staticNames = staticNames
        let c = counters
        let stats: [(String, StatsRegistry.Kind, ManagedAtomic<Int>?)] = [
            ("config_reload", .counter, c.reload), ("config_reload_time_ms", .gauge, c.updateTime),
            ("init_fetch_timeout", .counter, nil), ("update_attempt", .counter, c.attempt),
            ("update_failure", .counter, c.failure), ("update_rejected", .counter, c.rejected),
            ("update_success", .counter, c.success), ("update_time", .gauge, c.updateTime),
        ]
        for (name, kind, value) in stats {
            registry.registerComputed("cluster_manager.cds.\(name)", kind: kind) { value?.load(ordering: .relaxed) ?? 0 }
        }
    }

    var current: State { state.withLockedValue { $0 } }

    /// Reads the file and hands its clusters to `apply` (which installs them, or throws why not); counts the
    /// attempt and keeps the outcome. Returns the error of a refused attempt.
    @discardableResult
    func update(_ apply: ([Cluster]) throws -> Void) -> String? {
        counters.attempt.wrappingIncrement(ordering: .relaxed)
        let now = Date()
        let file: ClusterDiscoveryFile
        do {
            file = try ClusterDiscoveryFile.load(path: source.path)
        } catch let error as ConfigError where error.path.isEmpty && error.others.isEmpty {
            // Nothing decoded: the file is missing, unreadable or not YAML/JSON (Envoy's fetch failure).
            counters.failure.wrappingIncrement(ordering: .relaxed)
            return refused("\(source.path): \(error)", at: now, versionInfo: nil, rejected: false)
        } catch {
            counters.rejected.wrappingIncrement(ordering: .relaxed)
            return refused("\(source.path): \(error)", at: now, versionInfo: nil, rejected: true)
        }
        do {
            for (i, c) in file.clusters.enumerated() where staticNames.contains(c.name) {
                throw ConfigError(path: "resources[\(i)].name", line: nil,
                                  message: "cluster '\(c.name)' is a static cluster; CDS cannot replace it")
            }
            try apply(file.clusters)
        } catch {
            counters.rejected.wrappingIncrement(ordering: .relaxed)
            return refused("\(source.path): \(error)", at: now, versionInfo: file.versionInfo, rejected: true)
        }
        state.withLockedValue {
            $0 = State(versionInfo: file.versionInfo, clusters: file.clusters, documents: file.documents,
                       lastUpdated: now, lastError: nil)
        }
        counters.success.wrappingIncrement(ordering: .relaxed)
        counters.reload.wrappingIncrement(ordering: .relaxed)
        counters.updateTime.store(Int(now.timeIntervalSince1970 * 1000), ordering: .relaxed)
        Log.info("cds: clusters updated", [("version_info", file.versionInfo), ("clusters", "\(file.clusters.count)")])
        return nil
    }

    private func refused(_ message: String, at: Date, versionInfo: String?, rejected: Bool) -> String {
        state.withLockedValue { $0.lastError = (message, at, versionInfo) }
        Log.warning(rejected ? "cds: update rejected" : "cds: update failed", [("error", message)])
        return message
    }
}
