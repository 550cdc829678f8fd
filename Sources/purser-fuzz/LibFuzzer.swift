#if LIBFUZZER
import Foundation
import PurserFuzz

/// libFuzzer's entry point, reached when this executable is built with `-sanitize=fuzzer` and `-DLIBFUZZER`:
/// libFuzzer drives the target with inputs it grows by coverage, and stops at the first crash or wrong answer.
enum LibFuzzer {
    nonisolated(unsafe) static var harness: FuzzHarness?
    nonisolated(unsafe) static var target = FuzzTarget.jobLine

    static func run(_ target: FuzzTarget, pricing: String) -> Int32 {
        LibFuzzer.target = target
        do { harness = try FuzzHarness(pricingDirectory: pricing) } catch {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            return 1
        }
        var arguments = CommandLine.arguments
        var argc = Int32(arguments.count)
        var cStrings = arguments.map { strdup($0) }
        cStrings.append(nil)
        var argv = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: cStrings.count)
        argv.initialize(from: cStrings, count: cStrings.count)
        arguments.removeAll()
        return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
            if let wrong = LibFuzzer.harness!.run(LibFuzzer.target, input) {
                // Kept before the abort: a crash handler may stop libFuzzer from writing its own artifact.
                let path = ".build/fuzz-findings/\(LibFuzzer.target.rawValue)-wrong-\(UUID().uuidString)"
                FileManager.default.createFile(atPath: path, contents: Data(input))
                FileHandle.standardError.write(Data("wrong answer: \(wrong) (input in \(path))\n".utf8))
                abort()
            }
            return 0
        }
    }
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32
#endif
