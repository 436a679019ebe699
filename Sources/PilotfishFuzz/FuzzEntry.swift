import Foundation
import FuzzTargets

// Built two ways (scripts/fuzz):
// - with -sanitize=fuzzer and -D PILOTFISH_LIBFUZZER: libFuzzer's driver (LLVMFuzzerRunDriver) runs the target
//   PILOTFISH_FUZZ_TARGET names, with libFuzzer's own command line.
// - plainly (every `swift build`): `pilotfish-fuzz TARGET FILE|DIR...` replays inputs, to reproduce a crash
//   outside libFuzzer.

#if PILOTFISH_LIBFUZZER
nonisolated(unsafe) private var target = FuzzTarget.config

/// libFuzzer's entry for programs that have their own `main` (SwiftPM gives every executable one).
@_silgen_name("LLVMFuzzerRunDriver")
private func runDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@main
enum Fuzz {
    static func main() {
        let name = ProcessInfo.processInfo.environment["PILOTFISH_FUZZ_TARGET"] ?? ""
        guard let chosen = FuzzTarget(rawValue: name) else {
            let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
            FileHandle.standardError.write(Data("PILOTFISH_FUZZ_TARGET must be one of: \(names)\n".utf8))
            exit(2)
        }
        target = chosen
        target.prepare()
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(runDriver(&argc, &argv) { data, size in
            target.run(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        })
    }
}
#else
@main
enum Replay {
    static func main() {
        let args = CommandLine.arguments.dropFirst()
        guard let name = args.first, let target = FuzzTarget(rawValue: name), args.count > 1 else {
            let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")
            FileHandle.standardError.write(Data("usage: pilotfish-fuzz \(names) FILE|DIR...\n".utf8))
            exit(2)
        }
        target.prepare()
        var count = 0
        for path in args.dropFirst() {
            for file in FuzzInputs.files(at: path) {
                guard let data = FileManager.default.contents(atPath: file) else {
                    FileHandle.standardError.write(Data("cannot read \(file)\n".utf8))
                    exit(1)
                }
                target.run(Array(data))
                count += 1
            }
        }
        print("pilotfish-fuzz: \(name): \(count) inputs ran")
    }
}
#endif
