import Atomics
import Foundation
import NIOConcurrencyHelpers
import SidecarCore

/// One discovery subscription, to a file (`path_config_source`) or to a type on the ADS stream, and what became of
/// it: the resources of the last accepted update, its version, and the outcome of every attempt, counted as
/// Envoy's subscriptions count them under each of `scopes` (`cluster_manager.cds`, `http.<prefix>.rds.<name>`).
/// A file that cannot be read or parsed is a failure (`update_failure`); an update whose resources are refused (a
/// field Pilotfish does not run, a clash with a static resource, a snapshot that cannot be built) is rejected
/// (`update_rejected`), and the resources accepted before keep serving.
final class DiscoverySubscription<Resource: Sendable>: Sendable {
    let source: ConfigSource
    /// "CDS", "RDS": for logs.
    let what: String
    private let read: @Sendable (String) throws -> DiscoveryFile<Resource>
    private let state = NIOLockedValueBox(State())
    private let counters = SubscriptionCounters()
    private let emptyCounted: Bool
    private let reloadCounted: Bool

    struct State: Sendable {
        var versionInfo = ""
        /// Delta xDS: each resource's own version (`DiscoveryFile.resourceVersions`).
        var resourceVersions: [String]? = nil
        var resources: [Resource] = []
        var documents: [String] = []
        var lastUpdated: Date?
        /// Why the last attempt was refused, when it was; cleared by the next accepted one.
        var lastError: Refusal?
        /// What became of the last attempt.
        var lastAttempt = Attempt.none

        enum Attempt: Sendable { case none, accepted, rejected, failed }
    }

    struct Refusal: Sendable {
        var message: String
        var at: Date
        var versionInfo: String?
    }

    /// `emptyCounted`: RDS counts files without resources as `update_empty` (and keeps what it had);
    /// `reloadCounted`: CDS and RDS count `config_reload` too.
    init(source: ConfigSource, what: String, scopes: [String], registry: StatsRegistry, emptyCounted: Bool = false,
         reloadCounted: Bool = true, read: @escaping @Sendable (String) throws -> DiscoveryFile<Resource>) {
        self.source = source
        self.what = what
        self.read = read
        self.emptyCounted = emptyCounted
        self.reloadCounted = reloadCounted
        for scope in scopes { register(scope: scope, in: registry) }
    }

    /// Counts this file's attempts under `scope` (`cluster_manager.cds`; `http.<prefix>.rds.<name>` for each
    /// connection manager that reads an RDS file).
    func register(scope: String, in registry: StatsRegistry) {
        counters.register(scope: scope, in: registry, empty: emptyCounted, reload: reloadCounted)
    }

    var current: State { state.withLockedValue { $0 } }

    /// Reads the file and hands its resources to `apply` (which installs them, or throws why not); counts the
    /// attempt and keeps the outcome. Returns the error of a refused attempt.
    @discardableResult
    func update(_ apply: ([Resource]) throws -> Void) -> String? {
        guard let file = source.file else { return nil }
        return update(from: file.path, { try read(file.path) }, apply)
    }

    /// An update that came decoded (from the ADS stream, or a file read by the caller: `origin` names it), or
    /// the error that refused it, as `update` takes a file.
    @discardableResult
    func update(with decoded: Result<DiscoveryFile<Resource>, Error>, origin: String = "ads",
                _ apply: ([Resource]) throws -> Void) -> String? {
        update(from: origin, { try decoded.get() }, apply)
    }

    private func update(from origin: String, _ read: () throws -> DiscoveryFile<Resource>,
                        _ apply: ([Resource]) throws -> Void) -> String? {
        counters.attempt.wrappingIncrement(ordering: .relaxed)
        let now = Date()
        let file: DiscoveryFile<Resource>
        do {
            file = try read()
        } catch let error as ConfigError where error.path.isEmpty && error.others.isEmpty {
            // Nothing decoded: the file is missing, unreadable or not YAML/JSON (Envoy's fetch failure).
            counters.failure.wrappingIncrement(ordering: .relaxed)
            return refused("\(origin): \(error)", at: now, versionInfo: nil, rejected: false)
        } catch {
            counters.rejected.wrappingIncrement(ordering: .relaxed)
            return refused("\(origin): \(error)", at: now, versionInfo: nil, rejected: true)
        }
        do {
            try apply(file.resources)
        } catch {
            counters.rejected.wrappingIncrement(ordering: .relaxed)
            return refused("\(origin): \(error)", at: now, versionInfo: file.versionInfo, rejected: true)
        }
        let keep = emptyCounted && file.resources.isEmpty
        if keep { counters.empty.wrappingIncrement(ordering: .relaxed) }
        state.withLockedValue {
            // An empty RDS file changes nothing (Envoy's update_empty): the routes accepted before stay.
            $0 = State(versionInfo: file.versionInfo, resourceVersions: keep ? $0.resourceVersions : file.resourceVersions,
                       resources: keep ? $0.resources : file.resources,
                       documents: keep ? $0.documents : file.documents, lastUpdated: now, lastError: nil,
                       lastAttempt: .accepted)
        }
        counters.success.wrappingIncrement(ordering: .relaxed)
        counters.reload.wrappingIncrement(ordering: .relaxed)
        counters.updateTime.store(Int(now.timeIntervalSince1970 * 1000), ordering: .relaxed)
        Log.info("\(what.lowercased()): update accepted", [
            ("path", origin), ("version_info", file.versionInfo), ("resources", "\(file.resources.count)"),
        ])
        return nil
    }

    private func refused(_ message: String, at: Date, versionInfo: String?, rejected: Bool) -> String {
        state.withLockedValue {
            $0.lastError = Refusal(message: message, at: at, versionInfo: versionInfo)
            $0.lastAttempt = rejected ? .rejected : .failed
        }
        Log.warning("\(what.lowercased()): update \(rejected ? "rejected" : "failed")", [("error", message)])
        return message
    }

    /// Watches the file's directory (or `watched_directory`): `changed` runs on the watcher's thread for each
    /// file moved into place.
    func watch(_ changed: @escaping @Sendable () -> Void) throws -> FileMoveWatcher? {
        guard let source = source.file else { return nil }
        let file = URL(fileURLWithPath: source.path)
        return try FileMoveWatcher(
            directory: source.watchedDirectory ?? file.deletingLastPathComponent().path,
            name: source.watchedDirectory == nil ? file.lastPathComponent : nil, onMove: changed)
    }
}
