import Foundation
import NIOConcurrencyHelpers
import SidecarCore

#if canImport(Glibc)
import Glibc
#endif

/// Calls back when a file is moved into a directory (inotify `IN_MOVED_TO`), as Envoy's file subscriptions
/// watch: an update is written elsewhere and renamed into place, so a half-written file is never read. With a
/// file name, only moves onto that name count; without one, any move into the directory does (Envoy's
/// `watched_directory`, where a Kubernetes ConfigMap swaps its `..data` link).
///
/// Every watcher of the process shares one inotify descriptor and one thread (`FileWatchThread`): a thousand
/// EDS files cost a thousand watch registrations, not a thousand threads. Callbacks run on that thread, one at a
/// time, so updates are applied in the order their files moved.
final class FileMoveWatcher: Sendable {
    private let id: Int

    /// Watches from now on, but calls back only once started. Throws when the directory cannot be watched.
    init(directory: String, name: String?, onMove: @escaping @Sendable () -> Void) throws {
        id = try FileWatchThread.shared.add(directory: directory, name: name, onMove: onMove)
    }

    func start() { FileWatchThread.shared.activate(id) }

    func stop() { FileWatchThread.shared.remove(id) }
}

/// The process's inotify descriptor and the thread that reads it.
private final class FileWatchThread: @unchecked Sendable {
    static let shared = FileWatchThread()

    private struct Registration {
        var wd: Int32
        var name: String?
        var onMove: @Sendable () -> Void
        var active = false
    }

    private let lock = NIOLock()
    /// Guarded by `lock`.
    private var fd: Int32 = -1
    private var registrations: [Int: Registration] = [:]
    private var nextID = 0

    func add(directory: String, name: String?, onMove: @escaping @Sendable () -> Void) throws -> Int {
        try lock.withLock {
            if fd < 0 {
                let made = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
                guard made >= 0 else { throw ServerError("inotify_init1: \(String(cString: strerror(errno)))") }
                fd = made
                let thread = Thread { [self] in run(made) }
                thread.name = "file-watch"
                thread.start()
            }
            let wd = inotify_add_watch(fd, directory, UInt32(IN_MOVED_TO))
            guard wd >= 0 else {
                throw ServerError("cannot watch directory '\(directory)': \(String(cString: strerror(errno)))")
            }
            nextID += 1
            registrations[nextID] = Registration(wd: wd, name: name, onMove: onMove)
            return nextID
        }
    }

    func activate(_ id: Int) {
        lock.withLock { registrations[id]?.active = true }
    }

    /// No more callbacks for `id`; the directory's watch goes when no registration needs it.
    func remove(_ id: Int) {
        lock.withLock {
            guard let r = registrations.removeValue(forKey: id) else { return }
            if !registrations.values.contains(where: { $0.wd == r.wd }) { inotify_rm_watch(fd, r.wd) }
        }
    }

    private func run(_ fd: Int32) {
        let size = 64 * 1024
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        while true {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, -1) > 0 else { continue }
            let n = read(fd, buffer, size)
            guard n > 0 else { continue }
            let moved = Self.events(UnsafeRawBufferPointer(start: buffer, count: n))
            let callbacks = lock.withLock {
                registrations.sorted { $0.key < $1.key }.compactMap { _, r -> (@Sendable () -> Void)? in
                    guard r.active, moved.contains(where: { $0.wd == r.wd && (r.name == nil || r.name == $0.name) })
                    else { return nil }
                    return r.onMove
                }
            }
            for callback in callbacks { callback() }
        }
    }

    /// The (watch, file name) of each event read.
    private static func events(_ raw: UnsafeRawBufferPointer) -> [(wd: Int32, name: String)] {
        var out: [(wd: Int32, name: String)] = []
        let header = MemoryLayout<inotify_event>.size
        var offset = 0
        while offset + header <= raw.count {
            let wd = raw.load(fromByteOffset: offset, as: Int32.self)
            let len = Int(raw.load(fromByteOffset: offset + 12, as: UInt32.self))
            let start = offset + header
            let bytes = raw[start..<min(start + len, raw.count)].prefix { $0 != 0 }
            out.append((wd, String(decoding: bytes, as: UTF8.self)))
            offset = start + len
        }
        return out
    }
}
