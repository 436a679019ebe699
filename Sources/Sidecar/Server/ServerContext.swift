import Atomics
import SidecarCore

/// What the whole server shares with its workers, filters and admin (Envoy's server factory context): the runtime,
/// whether admin failed the server's health check, and who this proxy is. One per `SidecarServer`; Sendable and
/// read without locks.
final class ServerContext: Sendable {
    let runtime: Runtime
    /// `node.cluster` (Envoy's local cluster name, `--service-cluster`): the value of
    /// `x-envoy-upstream-healthchecked-cluster`.
    let localClusterName: String
    private let failed = ManagedAtomic(false)

    init(runtime: Runtime = Runtime(), localClusterName: String = "") {
        self.runtime = runtime
        self.localClusterName = localClusterName
    }

    /// Admin `POST /healthcheck/fail` (true) or `/healthcheck/ok` (false) was the last said.
    var healthCheckFailed: Bool { failed.load(ordering: .relaxed) }

    func failHealthCheck(_ fail: Bool) { failed.store(fail, ordering: .relaxed) }
}
