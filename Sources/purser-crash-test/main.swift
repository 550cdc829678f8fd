import Foundation
import PurserCLI
import PurserCore

// `purser` with one fault, for the kill tests only (it is not a product): when PURSER_TEST_CRASH_AFTER names a batch
// step (upload, create, ended, results), the process kills itself right after that step's API call returned, before
// what it returned is stored, the moment a crash does most harm. The `purser` executable has no such hook.
let environment = ProcessInfo.processInfo.environment
let crash: (@Sendable (BatchCall) -> Void)?
if let step = environment["PURSER_TEST_CRASH_AFTER"].flatMap(BatchCall.init(rawValue:)) {
    crash = { call in if call == step { kill(getpid(), SIGKILL) } }
} else {
    crash = nil
}
let code = await Purser.run(Array(CommandLine.arguments.dropFirst()), environment: environment, console: .standard(), afterBatchCall: crash)
exit(code)
