import Foundation
import NIOConcurrencyHelpers
import SidecarCore

#if canImport(Glibc)
import Glibc
#endif

/// Calls back when a file is moved into a directory (inotify `IN_MOVED_TO`), as Envoy's file subscriptions
/// watch: an update is written elsewhere and renamed into place, so a half-written file is never read. With a
/// file name, only moves onto that name count; without one, any move into the directory does (Envoy's
/// `watched_directory`, where a Kubernetes ConfigMap swaps its `..data` link). Runs its own thread, which wakes
/// every 200 ms to see whether it was stopped.
final class FileMoveWatcher: Sendable {
    private let fd: Int32
    private let name: String?
    private let stopped = ManagedFlag()
    private let onMove: @Sendable () -> Void

    init(directory: String, name: String?, onMove: @escaping @Sendable () -> Void) throws {
        let fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { throw ServerError("inotify_init1: \(String(cString: strerror(errno)))") }
        guard inotify_add_watch(fd, directory, UInt32(IN_MOVED_TO)) >= 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ServerError("cannot watch directory '\(directory)': \(reason)")
        }
        self.fd = fd
        self.name = name
        self.onMove = onMove
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "file-watch"
        thread.start()
    }

    func stop() { stopped.set() }

    private func run() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        defer { close(fd) }
        while !stopped.isSet {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 200) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { continue }
            if stopped.isSet { return }
            if movedOntoName(buffer, count: n) { onMove() }
        }
    }

    /// Whether the events read include a move onto the watched name (any move, without one).
    private func movedOntoName(_ buffer: [UInt8], count: Int) -> Bool {
        guard let name else { return true }
        var offset = 0
        let header = MemoryLayout<inotify_event>.size
        var found = false
        buffer.withUnsafeBytes { raw in
            while offset + header <= count {
                let len = Int(raw.load(fromByteOffset: offset + 12, as: UInt32.self))
                let start = offset + header
                let bytes = raw[start..<min(start + len, count)].prefix { $0 != 0 }
                if String(decoding: bytes, as: UTF8.self) == name { found = true }
                offset = start + len
            }
        }
        return found
    }
}

/// A flag one thread sets and another polls.
final class ManagedFlag: Sendable {
    private let value = NIOLockedValueBox(false)
    func set() { value.withLockedValue { $0 = true } }
    var isSet: Bool { value.withLockedValue { $0 } }
}
