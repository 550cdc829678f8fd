import Foundation
import PurserCore

// purser-jobgen COUNT [--seed N] [--shapes openai|mixed] [--output FILE]
// Writes COUNT realistic job lines, the same bytes for the same seed.
var arguments = Array(CommandLine.arguments.dropFirst())
func option(_ name: String, in arguments: inout [String]) -> String? {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return nil }
    defer { arguments.removeSubrange(index...(index + 1)) }
    return arguments[index + 1]
}
let seed = option("--seed", in: &arguments).flatMap { UInt64($0) } ?? 1
let shapesText = option("--shapes", in: &arguments) ?? "mixed"
let output = option("--output", in: &arguments)
guard let shapes = JobFileGenerator.ShapeMix(rawValue: shapesText), arguments.count == 1, let count = Int(arguments[0]), count > 0 else {
    FileHandle.standardError.write(Data("Usage: purser-jobgen <count> [--seed <n>] [--shapes openai|mixed] [--output <file>]\n".utf8))
    exit(64)
}
var generator = JobFileGenerator(seed: seed, shapes: shapes)
let handle: FileHandle
if let output {
    guard FileManager.default.createFile(atPath: output, contents: nil), let file = FileHandle(forWritingAtPath: output) else {
        FileHandle.standardError.write(Data("Error: cannot write \(output)\n".utf8))
        exit(1)
    }
    handle = file
} else {
    handle = FileHandle.standardOutput
}
var chunk = ""
for index in 0..<count {
    chunk += generator.line(index) + "\n"
    if chunk.utf8.count > 1 << 20 {
        handle.write(Data(chunk.utf8))
        chunk = ""
    }
}
handle.write(Data(chunk.utf8))
