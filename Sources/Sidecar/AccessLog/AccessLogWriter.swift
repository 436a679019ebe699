import Foundation
import NIOConcurrencyHelpers
import SidecarCore

#if canImport(Glibc)
import Glibc
#endif

/// The one thread that writes access log lines: workers hand it whole buffers, so a slow disk (or a stdout
/// nobody reads) blocks this thread, never an event loop. Files are opened on first use, for appending, and
/// opened again (a rotated file is created anew) when admin asks with POST /reopen_logs.
final class AccessLogWriter: @unchecked Sendable {
    static let shared = AccessLogWriter()

    private let condition = ConditionLock(value: 0)
    private enum Work {
        case write(AccessLogConfig.Destination, [UInt8])
        /// Close every file and open it again: what was queued before goes to the old file, what follows to the
        /// new one.
        case reopen
    }

    /// Work waiting, in the order it was handed over. Guarded by `condition`.
    private var queue: [Work] = []
    /// Buffers handed over and not yet written (`flush` waits for zero). Guarded by `condition`.
    private var outstanding = 0
    private var started = false
    /// Owned by the writer thread.
    private var descriptors: [AccessLogConfig.Destination: Int32] = [:]

    /// Queues `bytes` for `destination`; never blocks on I/O.
    func enqueue(_ bytes: [UInt8], to destination: AccessLogConfig.Destination) {
        submit(.write(destination, bytes))
    }

    /// Envoy's admin /reopen_logs: files are closed and opened again by path, in order with the writes.
    func reopen() {
        submit(.reopen)
    }

    private func submit(_ work: Work) {
        condition.lock()
        queue.append(work)
        outstanding += 1
        let start = !started
        started = true
        condition.unlock(withValue: 1)
        if start {
            let thread = Thread { [self] in run() }
            thread.name = "access-log"
            thread.start()
        }
    }

    /// Blocks until everything handed over so far is written (shutdown, tests).
    func flush() {
        condition.lock()
        while outstanding > 0 {
            condition.unlock()
            usleep(1000)
            condition.lock()
        }
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock(whenValue: 1)
            let batch = queue
            queue.removeAll()
            condition.unlock(withValue: 0)
            for work in batch {
                switch work {
                case .write(let destination, let bytes): write(bytes, to: destination)
                case .reopen: reopenFiles()
                }
            }
            condition.lock()
            outstanding -= batch.count
            condition.unlock(withValue: queue.isEmpty ? 0 : 1)
        }
    }

    private func write(_ bytes: [UInt8], to destination: AccessLogConfig.Destination) {
        guard let fd = descriptor(destination) else { return }
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += n
            }
        }
    }

    private func reopenFiles() {
        for (destination, fd) in descriptors {
            guard case .file = destination else { continue }
            close(fd)
            descriptors[destination] = nil
            _ = descriptor(destination)
        }
    }

    private func descriptor(_ destination: AccessLogConfig.Destination) -> Int32? {
        if let fd = descriptors[destination] { return fd }
        let fd: Int32
        switch destination {
        case .stdout: fd = 1
        case .stderr: fd = 2
        case .file(let path):
            fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            if fd < 0 {
                Log.error("access log file could not be opened", [("path", path), ("errno", "\(errno)")])
                return nil
            }
        }
        descriptors[destination] = fd
        return fd
    }
}
