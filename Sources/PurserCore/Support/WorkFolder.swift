import Foundation

/// A private folder beside the database (`DB.work`, mode 0700) for the files a run makes on the way: batch
/// inputs, upload bodies, downloaded results. Each file is 0600 and named for the process that made it, so a
/// run removes what a process that is gone left behind (a crash, a kill) without touching a live run's files.
public struct WorkFolder: Sendable {
    public let path: String

    public init(databasePath: String) { path = databasePath + ".work" }

    /// A folder of the caller's choosing (a run with no database file of its own, such as the benchmark's).
    public init(folder: String) { path = folder }

    /// Makes the folder when missing and keeps it private.
    public func prepare() throws {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw Problem("cannot make the folder \(path) for the run's temporary files: \(String(cString: strerror(errno)))")
        }
        var status = stat()
        guard lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFDIR else {
            throw Problem("\(path) is not a folder; move it aside so Purser can keep its temporary files there")
        }
        guard chmod(path, 0o700) == 0 else { throw Problem("cannot make \(path) private: \(String(cString: strerror(errno)))") }
    }

    /// A path in the folder for a new file of `kind`, not yet created, named for this process.
    func newPath(_ kind: String) throws -> URL {
        try prepare()
        return URL(fileURLWithPath: path).appendingPathComponent("\(getpid())-\(kind)-\(UUID().uuidString.lowercased()).tmp")
    }

    /// A new empty file of `kind`, readable and writable by its owner only.
    func newFile(_ kind: String) throws -> URL {
        let url = try newPath(kind)
        let descriptor = open(url.path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else { throw Problem("cannot create \(url.path): \(String(cString: strerror(errno)))") }
        close(descriptor)
        return url
    }

    /// Makes a file moved into the folder readable and writable by its owner only.
    func restrict(_ url: URL) throws {
        guard chmod(url.path, 0o600) == 0 else { throw Problem("cannot make \(url.path) private: \(String(cString: strerror(errno)))") }
    }

    /// Removes the folder when nothing is left in it (a run that ends leaves no empty folder behind).
    public func removeIfEmpty() { rmdir(path) }

    /// Removes the files of processes that are gone; returns how many.
    @discardableResult
    public func removeLeftovers() -> Int { WorkFolder.removeFilesOfGoneProcesses(in: path, prefix: "") }

    /// Removes the files in `directory` named `prefix`, a process id and `-` (then anything), whose process is
    /// gone: what a crash or a kill left behind. A live process's files, and names of any other form, stay.
    @discardableResult
    public static func removeFilesOfGoneProcesses(in directory: String, prefix: String) -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return 0 }
        var removed = 0
        for name in names where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            guard let dash = rest.firstIndex(of: "-"), let pid = Int32(rest[..<dash]), pid > 0, pid != getpid() else { continue }
            guard kill(pid, 0) != 0, errno == ESRCH else { continue }
            if unlink(directory + "/" + name) == 0 { removed += 1 }
        }
        return removed
    }
}
