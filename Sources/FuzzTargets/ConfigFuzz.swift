import Sidecar
import SidecarCore

/// Bootstrap text (YAML or JSON, as `sidecar -c` reads it) through the whole decoder. Any input is either a
/// bootstrap or a `ConfigError`; bytes that are not UTF-8 are read as `sidecar -c` would refuse them.
enum ConfigFuzz {
    static func run(_ input: UnsafeRawBufferPointer) {
        // `sidecar -c` refuses a file that is not UTF-8 before decoding; the decoder only ever sees valid text.
        guard let text = String(validating: input, as: UTF8.self) else { return }
        _ = try? Bootstrap.load(text: text)
    }
}
