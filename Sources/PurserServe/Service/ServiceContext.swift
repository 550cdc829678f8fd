import Foundation
import PurserCore
import PurserSQLite
import Synchronization

/// What every part of the service shares: the database (one connection for short reads and writes, behind a lock;
/// long work opens its own), the pricing tables, the clock, and the folder that holds the files' bytes.
final class ServiceContext: @unchecked Sendable {
    let databasePath: String
    let catalog: PricingCatalog
    let clock: WallClock
    /// `DB.files`: uploads and batch outputs, 0700; each file 0600.
    let filesFolder: String
    private let lock = NSLock()
    private let store: StoreFile

    /// How long a create with the same input and parameters is taken for a retry of the first.
    let retryWindowMilliseconds: Int64 = 10 * 60_000
    /// The providers' limits: an upload (OpenAI: 512 MB), a batch input file (200 MB), an Anthropic create (256 MB).
    let maximumUploadBytes: Int64 = 512 << 20
    let maximumBatchFileBytes: Int64 = 200 << 20
    let maximumInlineBatchBytes: Int64 = 256 << 20
    let maximumBatchRequests = 100_000
    /// Uploads one key may have in progress at once.
    let uploadsPerKey = 4

    /// Job figures read for polls, shared for a moment by everyone polling the same batch.
    let jobFigures = JobFiguresCache()

    private let uploads = NSLock()
    private var uploadsInProgress: [Int64: Int] = [:]

    init(databasePath: String, catalog: PricingCatalog, clock: WallClock) throws {
        self.databasePath = databasePath
        self.catalog = catalog
        self.clock = clock
        filesFolder = databasePath + ".files"
        store = try StoreFile.open(path: databasePath)
        if mkdir(filesFolder, 0o700) != 0 && errno != EEXIST {
            throw Problem("cannot make \(filesFolder) for the service's files: \(String(cString: strerror(errno)))")
        }
        guard chmod(filesFolder, 0o700) == 0 else { throw Problem("cannot make \(filesFolder) private: \(String(cString: strerror(errno)))") }
    }

    /// Runs `body` on the shared connection, one caller at a time.
    func withStore<T>(_ body: (StoreFile) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(store)
    }

    func now() -> Int64 { clock.now() }

    /// Counts an upload in progress for `key`; false when it already has as many as allowed.
    func beginUpload(key: Int64) -> Bool {
        uploads.lock()
        defer { uploads.unlock() }
        guard uploadsInProgress[key, default: 0] < uploadsPerKey else { return false }
        uploadsInProgress[key, default: 0] += 1
        return true
    }

    func endUpload(key: Int64) {
        uploads.lock()
        defer { uploads.unlock() }
        uploadsInProgress[key, default: 1] -= 1
    }

    /// A new id: `prefix` and 24 random hex digits.
    static func newID(_ prefix: String) -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<12).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return prefix + SHA256.hex(of: bytes).prefix(24)
    }

    /// Where a file's bytes live.
    func path(forFile id: String) -> String { filesFolder + "/" + id }
}

/// Each job's figures as last read, kept for a quarter of a second.
final class JobFiguresCache: Sendable {
    static let freshMilliseconds: UInt64 = 250
    private let kept = Mutex<[Int64: (at: UInt64, figures: JobFigures)]>([:])

    func figures(job: Int64, read: () throws -> JobFigures) throws -> JobFigures {
        let now = DispatchTime.now().uptimeNanoseconds / 1_000_000
        if let found = kept.withLock({ $0[job] }), now - found.at < JobFiguresCache.freshMilliseconds { return found.figures }
        let figures = try read()
        kept.withLock { kept in
            if kept.count > 10_000 { kept.removeAll() }
            kept[job] = (now, figures)
        }
        return figures
    }
}
