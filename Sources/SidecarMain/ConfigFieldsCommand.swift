import ArgumentParser
import Sidecar

/// `sidecar config-fields`: the config messages and fields Pilotfish decodes, as JSON, for
/// scripts/gen-xds-protos. Not shown in help: a build tool's input, not a user command.
struct ConfigFieldsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config-fields",
        _superCommandName: "sidecar",
        abstract: "Print the config messages and fields Pilotfish decodes, as JSON.",
        shouldDisplay: false)

    func run() throws {
        print(ConfigFieldsDump.json())
    }
}
