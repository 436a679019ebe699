import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import Sidecar
@testable import SidecarCore

#if canImport(Glibc)
import Glibc
#endif

/// The access log thread's queue is bounded: a destination that stops taking bytes (here a FIFO nobody reads)
/// costs bounded memory, the excess is dropped and counted, and nothing blocks the caller.
@Suite struct AccessLogWriterTests {
    @Test func aStuckDestinationDropsBatchesPastTheBound() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("alw-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = dir.appendingPathComponent("log").path
        #expect(mkfifo(fifo, 0o600) == 0)
        // A reader that does not read (yet): the writer's open succeeds, its writes fill the pipe and block.
        let reader = open(fifo, O_RDONLY | O_NONBLOCK)
        #expect(reader >= 0)
        defer { close(reader) }

        // One line bigger than a pipe's buffer: the first batch blocks the thread in write().
        let big = try SubstitutionFormat(parsing: String(repeating: "x", count: 200_000) + "\n")
        let log = AccessLogConfig(destination: .file(path: fifo), format: .text(big))
        let entry = AccessLogWriter.Entry(logs: [log], selected: 1, context: FormatContext())
        let writer = AccessLogWriter(maxQueuedBatches: 2)
        writer.enqueue([entry])
        // Wait until the thread has taken the first batch (the queue is empty again), then fill the queue.
        let start = Date()
        while writer.queuedBatches > 0, Date().timeIntervalSince(start) < 5 { usleep(1000) }
        writer.enqueue([entry])
        writer.enqueue([entry, entry])
        #expect(writer.queuedBatches == 2)
        writer.enqueue([entry, entry, entry])
        writer.enqueue([entry])
        #expect(writer.dropped == 4)

        // Reading the FIFO lets the thread finish what it kept: 1 + 1 + 2 lines.
        let done = NIOLockedValueBox(false)
        let drained = NIOLockedValueBox(0)
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while !done.withLockedValue({ $0 }) {
                let n = read(reader, &buffer, buffer.count)
                if n > 0 { drained.withLockedValue { $0 += n } } else { usleep(1000) }
            }
        }
        thread.start()
        writer.flush()
        // The last write may still sit in the pipe: read until all four lines are out.
        let deadline = Date().addingTimeInterval(5)
        while drained.withLockedValue({ $0 }) < 4 * 200_001, Date() < deadline { usleep(1000) }
        done.withLockedValue { $0 = true }
        #expect(drained.withLockedValue { $0 } == 4 * 200_001)
    }
}
