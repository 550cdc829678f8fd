import Foundation
@testable import PurserCLI
import PurserCore
import TestSupport

let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// 2026-11-24T00:00:00Z, the in-process tests' "now" unless they say otherwise.
let testNow: Int64 = 1_795_478_400_000

/// What `purser` printed when run in-process.
struct Run {
    var code: Int32
    var out: String
    var error: String
}

private final class Capture: @unchecked Sendable {
    var out = ""
    var error = ""
}

/// Runs `purser` in-process with the bundled pricing tables and the clock stopped at `now`.
func purser(_ arguments: [String], environment: [String: String] = [:], database: String? = nil, at now: Int64 = testNow) async -> Run {
    let capture = Capture()
    let console = Console(out: { capture.out += $0 }, error: { capture.error += $0 })
    var environment = environment
    environment["PURSER_PRICING"] = repository.appendingPathComponent("pricing").path
    if let database { environment["PURSER_DB"] = database }
    let code = await Purser.run(arguments, environment: environment, console: console, clock: .fixed(now))
    return Run(code: code, out: capture.out, error: capture.error)
}

/// A database path in a fresh temporary folder.
func temporaryDatabasePath() -> String {
    let directory = testFiles.appendingPathComponent("purser-cli-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory.appendingPathComponent("purser.db").path
}
