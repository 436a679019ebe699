import Foundation
import FuzzTargets

// Built two ways (scripts/fuzz):
// - with -sanitize=fuzzer and -D PILOTFISH_LIBFUZZER: libFuzzer's main drives `LLVMFuzzerTestOneInput`; the target
//   comes from PILOTFISH_FUZZ_TARGET.
// - plainly (every `swift build`): `pilotfish-fuzz TARGET FILE|DIR...` replays inputs, to reproduce a crash
//   outside libFuzzer.

#if PILOTFISH_LIBFUZZER
nonisolated(unsafe) private var target = FuzzTarget.config

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    let name = ProcessInfo.processInfo.environment["PILOTFISH_FUZZ_TARGET"] ?? ""
    guard let chosen = FuzzTarget(rawValue: name) else {
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
        FileHandle.standardError.write(Data("PILOTFISH_FUZZ_TARGET must be one of: \(names)\n".utf8))
        exit(2)
    }
    target = chosen
    target.prepare()
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    target.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
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
