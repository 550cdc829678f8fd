import Foundation

/// The folder this test process keeps its files in (databases, job files, logs of the processes it starts): one of its
/// own under the system's temporary folder, removed when the process exits. A run of the suite used to leave about
/// 1,100 files (190 MB) in /tmp every time.
public let testFiles: URL = {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("purser-tests-\(getpid())-\(UUID().uuidString)")
    do {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    } catch {
        fatalError("cannot make the tests' folder \(folder.path): \(error)")
    }
    atexit {
        // At exit nothing is left to tell of a failure: whatever cannot be removed stays, as it did before.
        try? FileManager.default.removeItem(at: testFiles)
    }
    return folder
}()
