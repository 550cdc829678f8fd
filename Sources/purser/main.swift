import Foundation
import PurserCLI

let code = await Purser.run(Array(CommandLine.arguments.dropFirst()), environment: ProcessInfo.processInfo.environment, console: .standard())
exit(code)
