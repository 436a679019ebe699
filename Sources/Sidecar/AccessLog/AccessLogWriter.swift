import Foundation
import NIOConcurrencyHelpers
import SidecarCore

#if canImport(Glibc)
import Glibc
#endif

/// The one thread that renders and writes access log lines: workers hand it batches of finished streams (each
/// with the loggers that took it), so neither formatting nor a slow disk (or a stdout nobody reads) costs an
/// event loop anything but the hand-over. Files are opened on first use, for appending, and opened again (a
/// rotated file is created anew) when admin asks with POST /reopen_logs.
final class AccessLogWriter: @unchecked Sendable {
    static let shared = AccessLogWriter()

    private let condition = ConditionLock(value: 0)
    /// A stream (or connection) to log: what it was and the loggers whose filters took it.
    struct Entry: Sendable {
        var logs: [AccessLogConfig]
        /// The loggers of `logs` that log this entry, by position (a logger per bit).
        var selected: UInt64
        var context: FormatContext

        init(logs: [AccessLogConfig], selected: UInt64, context: FormatContext) {
            self.logs = logs
            self.selected = selected
            self.context = context
        }

        /// An entry whose context is filled in place afterwards (`Worker.logAccess(_:fill:)`): made here, the
        /// empty context is not built elsewhere and copied in.
        init(logs: [AccessLogConfig]) {
            self.logs = logs
            selected = 0
            context = FormatContext()
        }
    }

    private enum Work {
        case render([Entry])
        /// Close every file and open it again: what was queued before goes to the old file, what follows to the
        /// new one.
        case reopen
    }

    /// Work waiting, in the order it was handed over. Guarded by `condition`.
    private var queue: [Work] = []
    /// The bound on batches waiting while the thread is busy (a disk that stalls, a stdout nobody reads): past
    /// it a worker's batch is dropped and counted, so a stuck destination costs bounded memory (each entry holds
    /// its stream's headers until rendered), never an event loop.
    let maxQueuedBatches: Int
    /// Streams whose lines were dropped at the bound. Guarded by `condition`.
    private(set) var droppedEntries = 0

    init(maxQueuedBatches: Int = 1024) {
        self.maxQueuedBatches = maxQueuedBatches
    }

    /// Batches waiting for the thread (tests).
    var queuedBatches: Int {
        condition.lock()
        defer { condition.unlock() }
        return queue.count
    }

    /// Streams dropped so far at the queue's bound.
    var dropped: Int {
        condition.lock()
        defer { condition.unlock() }
        return droppedEntries
    }
    /// Buffers handed over and not yet written (`flush` waits for zero). Guarded by `condition`.
    private var outstanding = 0
    private var started = false
    /// Owned by the writer thread.
    private var descriptors: [AccessLogConfig.Destination: Int32] = [:]

    /// Queues a worker's batch of entries; never blocks on I/O.
    func enqueue(_ entries: [Entry]) {
        if !submit(.render(entries), bounded: true) {
            // The first drop is news; the rest would be a log line per batch while the destination is stuck.
            if dropped == entries.count {
                Log.warning("access log lines dropped: the access log thread is not keeping up (a stalled file or stdout)",
                            [("queued_batches", "\(maxQueuedBatches)")])
            }
        }
    }

    /// Envoy's admin /reopen_logs: files are closed and opened again by path, in order with the writes.
    func reopen() {
        submit(.reopen)
    }

    /// False when `bounded` work met the bound and was dropped.
    @discardableResult
    private func submit(_ work: Work, bounded: Bool = false) -> Bool {
        condition.lock()
        if bounded, queue.count >= maxQueuedBatches, case .render(let entries) = work {
            droppedEntries += entries.count
            condition.unlock()
            return false
        }
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
        return true
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
                case .render(let entries): render(entries)
                case .reopen: reopenFiles()
                }
            }
            condition.lock()
            outstanding -= batch.count
            condition.unlock(withValue: queue.isEmpty ? 0 : 1)
        }
    }

    /// Owned by the writer thread: one buffer per destination, reused.
    private var buffers: [(destination: AccessLogConfig.Destination, bytes: [UInt8])] = []

    /// Renders a batch, each line into its destination's buffer, then writes each buffer with one call.
    private func render(_ entries: [Entry]) {
        // Entries are read in place (a copy of one is some forty reference-count operations).
        entries.withUnsafeBufferPointer { entries in
            for e in entries.indices {
                for i in entries[e].logs.indices where entries[e].selected & (1 << UInt64(i)) != 0 {
                    let destination = entries[e].logs[i].destination
                    let b: Int
                    if let found = buffers.firstIndex(where: { $0.destination == destination }) {
                        b = found
                    } else {
                        buffers.append((destination, []))
                        b = buffers.count - 1
                    }
                    entries[e].logs[i].render(entries[e].context, into: &buffers[b].bytes)
                }
            }
        }
        for i in buffers.indices where !buffers[i].bytes.isEmpty {
            write(buffers[i].bytes, to: buffers[i].destination)
            buffers[i].bytes.removeAll(keepingCapacity: true)
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
