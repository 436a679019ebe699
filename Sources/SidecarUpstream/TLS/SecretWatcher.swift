import Foundation
import NIOConcurrencyHelpers
import NIOCore
import SidecarCore

/// Rotation for secrets served from files (SDS `path_config_source`): every `interval` it looks at each
/// secret's SDS file and the certificate, key and CA files that file names (following symlinks, so the
/// Kubernetes `..data` swap is seen), and when anything changed rebuilds the TLS contexts using it. New
/// handshakes then use the new certificate; connections already up keep theirs. A change that does not
/// load (a key written before its certificate, a half-written file) is refused, logged and counted, and the
/// old context stays until a later look finds a consistent set.
///
/// Polling rather than inotify: two `stat` calls per file twice a second cost nothing, need no extra
/// thread, and see renames, symlink swaps and in-place writes alike.
package final class SecretWatcher: Sendable {
    private struct Watched: Sendable {
        let reference: SDSSecretReference
        let providers: [TLSContextProvider]
        let success: ManagedCounter
        let rotationFailed: ManagedCounter
    }

    private let watched: [Watched]
    private let eventLoop: EventLoop
    private let interval: TimeAmount
    /// Per secret: the file states the current context was built from, and the last state refused.
    private let state: NIOLockedValueBox<[SDSSecretReference: (loaded: [FileState], refused: [FileState]?)]>
    private let task = NIOLockedValueBox<RepeatedTask?>(nil)
    /// Per secret: the files its SDS file named when that file was last read, and the SDS file's state
    /// then; the YAML is parsed again only when the SDS file itself changed.
    private let named = NIOLockedValueBox<[SDSSecretReference: (sds: FileState, files: [String])]>([:])

    package init(providers: [TLSContextProvider], registry: StatsRegistry, eventLoop: EventLoop, interval: TimeAmount = .milliseconds(500)) {
        var byRef: [SDSSecretReference: [TLSContextProvider]] = [:]
        var order: [SDSSecretReference] = []
        for p in providers {
            for r in p.secretReferences where r.file != nil {
                if byRef[r] == nil { order.append(r) }
                byRef[r, default: []].append(p)
            }
        }
        var seenNames: Set<String> = []
        watched = order.map { r in
            // Envoy's `sds.<secret name>.*` counters; one set per name.
            let first = seenNames.insert(r.name).inserted
            let success = ManagedCounter(), rotationFailed = ManagedCounter()
            if first {
                registry.registerComputed("sds.\(r.name).update_success", kind: .counter) { success.value }
                registry.registerComputed("sds.\(r.name).key_rotation_failed", kind: .counter) { rotationFailed.value }
            }
            return Watched(reference: r, providers: byRef[r]!, success: success, rotationFailed: rotationFailed)
        }
        self.eventLoop = eventLoop
        self.interval = interval
        state = NIOLockedValueBox([:])
    }

    /// Notes the files' states; call just before the contexts are first loaded, so a change made while
    /// they load is seen by the first look.
    package func prime() {
        var initial: [SDSSecretReference: (loaded: [FileState], refused: [FileState]?)] = [:]
        for w in watched { initial[w.reference] = (fileStates(w.reference), nil) }
        state.withLockedValue { $0 = initial }
    }

    /// The first load succeeded: Envoy counts it as the secret's first update.
    package func initialLoadSucceeded() {
        for w in watched { w.success.increment() }
    }

    package func start() {
        let t = eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in check() }
        task.withLockedValue { $0 = t }
    }

    package func stop() {
        task.withLockedValue { $0?.cancel(); $0 = nil }
    }

    /// One look at every secret's files.
    package func check() {
        for w in watched {
            let now = fileStates(w.reference)
            guard let previous = state.withLockedValue({ $0[w.reference] }) else { continue }
            guard now != previous.loaded, now != previous.refused else { continue }
            do {
                var serial: String?
                for p in w.providers { serial = try p.load().certificateSerial ?? serial }
                // A change made while loading differs from `now` and is loaded at the next look.
                state.withLockedValue { $0[w.reference] = (now, nil) }
                w.success.increment()
                Log.info("secret rotated", [
                    ("secret", w.reference.name), ("file", w.reference.file?.path ?? "-"), ("serial", serial ?? "-"),
                ])
            } catch {
                state.withLockedValue { $0[w.reference]!.refused = now }
                w.rotationFailed.increment()
                Log.warning("secret update refused; keeping the current one", [
                    ("secret", w.reference.name), ("file", w.reference.file?.path ?? "-"), ("reason", "\(error)"),
                ])
            }
        }
    }

    /// What identifies a file's content without reading it: inode, size, mtime and ctime.
    package struct FileState: Equatable, Sendable {
        package var path: String
        package var inode: UInt64 = 0, size: Int64 = 0, mtime: Int = 0, ctime: Int = 0
        package var exists = false
    }

    /// The states of the SDS file and of every file its secret names.
    package func fileStates(_ ref: SDSSecretReference) -> [FileState] {
        let sds = Self.fileState(ref.file?.path ?? "")
        let files: [String]
        if let cached = named.withLockedValue({ $0[ref] }), cached.sds == sds {
            files = cached.files
        } else {
            files = Self.namedFiles(ref)
            named.withLockedValue { $0[ref] = (sds, files) }
        }
        return [sds] + files.map(Self.fileState)
    }

    /// The certificate, key and CA files the SDS file names (none while it cannot be read).
    package static func namedFiles(_ ref: SDSSecretReference) -> [String] {
        guard let secret = try? SecretFile.load(ref) else { return [] }
        var paths: [String] = []
        switch secret {
        case .certificate(let c):
            for source in [c.certificateChain, c.privateKey] { if case .file(let p) = source { paths.append(p) } }
        case .validation(let v):
            if case .file(let p)? = v.trustedCA { paths.append(p) }
        }
        return paths
    }

    package static func fileState(_ path: String) -> FileState {
        var st = stat()
        var s = FileState(path: path)
        guard stat(path, &st) == 0 else { return s }
        s.exists = true
        s.inode = UInt64(st.st_ino)
        s.size = Int64(st.st_size)
        s.mtime = st.st_mtim.tv_sec * 1_000_000_000 + st.st_mtim.tv_nsec
        s.ctime = st.st_ctim.tv_sec * 1_000_000_000 + st.st_ctim.tv_nsec
        return s
    }
}

/// A counter outside the workers' stat arrays (bumped off the hot path), read by admin.
package final class ManagedCounter: Sendable {
    private let box = NIOLockedValueBox(0)
    package var value: Int { box.withLockedValue { $0 } }
    package func increment() { box.withLockedValue { $0 += 1 } }
}
