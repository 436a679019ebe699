import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Replaces files so that a reader sees either the old or the new content, never a partial write: each file is
/// written to a hidden temporary in the same directory (so `rename(2)` stays within one filesystem and is atomic),
/// fsynced, and renamed over its target; the directory is fsynced last so the renames survive a crash.
///
/// A sidecar rotating its identity watches these files, so a batch is staged completely before the first rename,
/// and the renames then follow one another with nothing in between: the window in which some targets are new and
/// others old is a few system calls long, and its shape is the caller's order.
enum AtomicFiles {
    struct File {
        var path: String
        var contents: [UInt8]
        /// Applied with `fchmod` before any byte is written, so a key is never readable by others, even as a
        /// temporary and whatever the umask.
        var mode: mode_t

        init(path: String, contents: String, mode: mode_t) {
            self.path = path
            self.contents = Array(contents.utf8)
            self.mode = mode
        }
    }

    /// Writes every file to a temporary, then renames them over their targets in array order. On failure no
    /// temporary is left behind; targets already renamed stay replaced (each one is whole).
    static func replace(_ files: [File]) throws {
        var staged: [(temporary: String, target: String)] = []
        defer {
            for (temporary, _) in staged { unlink(temporary) }
        }
        for file in files {
            staged.append((try stage(file), file.path))
        }
        while !staged.isEmpty {
            let (temporary, target) = staged[0]
            guard rename(temporary, target) == 0 else {
                throw IdentityError("cannot replace '\(target)': \(errnoDescription())")
            }
            staged.removeFirst()
        }
        for directory in Set(files.map { ($0.path as NSString).deletingLastPathComponent }) {
            try syncDirectory(directory.isEmpty ? "." : directory)
        }
    }

    /// `mkdir -p`, with `mode` for the directories it creates (existing ones keep theirs).
    static func createDirectory(_ path: String, mode: Int) throws {
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: mode])
        } catch {
            throw IdentityError("cannot create directory '\(path)': \(error.localizedDescription)")
        }
    }

    private static func stage(_ file: File) throws -> String {
        let directory = (file.path as NSString).deletingLastPathComponent
        let name = (file.path as NSString).lastPathComponent
        let suffix = String(UInt64.random(in: .min ... .max), radix: 36)
        let temporary = ((directory.isEmpty ? "." : directory) as NSString)
            .appendingPathComponent(".\(name).tmp-\(suffix)")
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, file.mode)
        guard fd >= 0 else { throw IdentityError("cannot create '\(temporary)': \(errnoDescription())") }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(temporary) }
        }
        guard fchmod(fd, file.mode) == 0 else {
            throw IdentityError("cannot set the mode of '\(temporary)': \(errnoDescription())")
        }
        try file.contents.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { throw IdentityError("cannot write '\(temporary)': \(errnoDescription())") }
                offset += written
            }
        }
        guard fsync(fd) == 0 else { throw IdentityError("cannot sync '\(temporary)': \(errnoDescription())") }
        ok = true
        return temporary
    }

    private static func syncDirectory(_ directory: String) throws {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw IdentityError("cannot open directory '\(directory)': \(errnoDescription())") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw IdentityError("cannot sync directory '\(directory)': \(errnoDescription())") }
    }

    private static func errnoDescription() -> String {
        String(cString: strerror(errno))
    }
}
