import Foundation
import Synchronization

/// The requests a run has started calling, in a file beside the database (`DB.started.OWNER`): each request's id,
/// eight bytes, appended before its call is sent. It lets a run claim ahead of its calls without overstating what a
/// crash may have cost: when the run is killed, the next run takes over its leases and counts as unsettled (maybe
/// billed) only the requests in this file; those it had claimed and never called go back to the queue with their
/// reservations dropped.
///
/// The file has the durability of the database's own commits (`synchronous = NORMAL`): a write reaches the kernel
/// before the call is sent, so it outlives the process, not the machine. A note that cannot be written removes the
/// file, so a later run counts every lease of this one as maybe billed, as it would with no file at all. A long run
/// (`--watch`, a serve) keeps the file small by writing it again with only the requests it still holds
/// (`beginCompacting`, `finishCompacting`).
public final class StartedCalls: Sendable {
    /// This run's file.
    public let path: String
    private let databasePath: String
    /// The file is written again once it holds this many bytes (a million calls).
    let compactingSize: Int64

    private struct Files {
        /// The open file; -1 before `open`, after `close`, or once a note failed.
        var descriptor: Int32 = -1
        var size: Int64 = 0
        /// The size at which the file is next written again: further off after an attempt failed.
        var compactAt: Int64 = 0
        /// While the file is written again: the new one, which takes every note as well until it replaces the old.
        var compacted: Int32 = -1
    }

    private let files = Mutex(Files())

    /// The file of the run whose leases are named `owner` (`RunOptions.worker`).
    public init(databasePath: String, owner: String, compactingSize: Int64 = 8 << 20) {
        self.databasePath = databasePath
        self.compactingSize = compactingSize
        path = StartedCalls.path(databasePath: databasePath, owner: owner)
    }

    static func path(databasePath: String, owner: String) -> String { databasePath + ".started." + owner }

    /// Where the file is written again, beside it, until it replaces it.
    private static let compactedSuffix = ".new"
    private var compactedPath: String { path + StartedCalls.compactedSuffix }

    /// Creates the file, empty. A run that cannot keeps no notes, and claims no more than it can have in flight.
    public func open() throws {
        let path = path
        try files.withLock { files in
            guard files.descriptor < 0 else { return }
            files.descriptor = try StartedCalls.create(path)
            (files.size, files.compactAt) = (0, compactingSize)
        }
    }

    private static func create(_ path: String) throws -> Int32 {
        let opened = Foundation.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o600)
        guard opened >= 0 else { throw Problem("cannot create \(path): \(String(cString: strerror(errno)))") }
        return opened
    }

    /// True while notes are being kept: a run claims ahead of its calls only then.
    public var isKept: Bool { files.withLock { $0.descriptor >= 0 } }

    /// Notes that the request's call is about to be sent. Nothing to do when no file is kept. When the note cannot be
    /// written the file is removed and no more notes are kept: returns why; throws only when the file cannot be removed
    /// either (a later run would then take the requests called since for never called).
    public func note(_ request: Int64) throws -> String? {
        try files.withLock { files in
            guard files.descriptor >= 0 else { return nil }
            var failure = StartedCalls.append([request], to: files.descriptor)
            if failure == nil, files.compacted >= 0 { failure = StartedCalls.append([request], to: files.compacted) }
            guard let failure else {
                files.size += 8
                return nil
            }
            try giveUp(&files, because: failure)
            return "cannot write \(path): \(failure)"
        }
    }

    /// Appends ids; the error's words when the write failed or fell short.
    private static func append(_ ids: [Int64], to descriptor: Int32) -> String? {
        let bytes = ids.map(\.littleEndian)
        let written = bytes.withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
        guard written != bytes.count * 8 else { return nil }
        // A short write leaves a partial id, which `read` ignores; the file goes anyway, as after a failed one.
        return written < 0 ? String(cString: strerror(errno)) : "only \(written) of \(bytes.count * 8) bytes were written"
    }

    /// No more notes are kept: the files are closed and removed, so that a run taking this one's leases over counts
    /// every one of them as maybe billed. Throws when the file cannot be removed.
    private func giveUp(_ files: inout Files, because failure: String) throws {
        shut(&files)
        guard unlink(path) == 0 || errno == ENOENT else {
            throw Problem("cannot note a call as started in \(path) (\(failure)), nor remove it (\(String(cString: strerror(errno)))); remove it by hand before the next run")
        }
    }

    /// True when the file has grown past its size for writing again, and that has not begun.
    public var needsCompacting: Bool { files.withLock { $0.descriptor >= 0 && $0.compacted < 0 && $0.size >= $0.compactAt } }

    /// Starts writing the file again: from now on every note goes to the new file as well. The run then reads the
    /// requests it holds leased and hands them to `finishCompacting`: every call noted before this moment and still
    /// running is among them.
    public func beginCompacting() throws {
        let compactedPath = compactedPath
        try files.withLock { files in
            guard files.descriptor >= 0, files.compacted < 0 else { return }
            files.compacted = try StartedCalls.create(compactedPath)
        }
    }

    /// The new file takes the requests this run holds leased (read after `beginCompacting`) and replaces the old.
    public func finishCompacting(leased: [Int64]) throws {
        let (path, compactedPath) = (path, compactedPath)
        try files.withLock { files in
            guard files.descriptor >= 0, files.compacted >= 0 else { return }
            var failure = StartedCalls.append(leased, to: files.compacted).map { "cannot write \(compactedPath) (\($0))" }
            if failure == nil, rename(compactedPath, path) != 0 {
                failure = "cannot replace \(path) with \(compactedPath) (\(String(cString: strerror(errno))))"
            }
            if let failure {
                // The old file still holds every note: only the new one goes, and the next attempt waits for twice the size.
                StartedCalls.drop(&files.compacted, at: compactedPath)
                files.compactAt = files.size * 2
                throw Problem("\(failure); \(path) stays as it is")
            }
            Foundation.close(files.descriptor)
            var status = stat()
            files.size = fstat(files.compacted, &status) == 0 ? Int64(status.st_size) : 0
            files.compactAt = max(compactingSize, files.size * 2)
            (files.descriptor, files.compacted) = (files.compacted, -1)
        }
    }

    /// Stops writing the file again (the leases could not be read); the old file stays, holding every note, and the
    /// next attempt waits for twice the size.
    public func abandonCompacting() {
        let compactedPath = compactedPath
        files.withLock { files in
            guard files.compacted >= 0 else { return }
            StartedCalls.drop(&files.compacted, at: compactedPath)
            files.compactAt = files.size * 2
        }
    }

    /// Closes and removes the new file of an attempt to write the file again.
    private static func drop(_ descriptor: inout Int32, at path: String) {
        Foundation.close(descriptor)
        descriptor = -1
        unlink(path)
    }

    /// Closes the file; removes it when `remove` (the run ended holding no lease), or else leaves it for the run that
    /// takes the leases over.
    public func close(remove: Bool) {
        let path = path
        files.withLock { files in
            guard files.descriptor >= 0 else { return }
            shut(&files)
            if remove { unlink(path) }
        }
    }

    /// Closes both files and removes the new one of an attempt to write the file again, if any: no notes are kept.
    private func shut(_ files: inout Files) {
        for descriptor in [files.descriptor, files.compacted] where descriptor >= 0 { Foundation.close(descriptor) }
        files = Files()
        unlink(compactedPath)
    }

    /// The requests another run (`owner`) noted as started; nil when it kept no file, or it cannot be read.
    public func read(owner: String) -> Set<Int64>? {
        guard let data = FileManager.default.contents(atPath: StartedCalls.path(databasePath: databasePath, owner: owner)) else { return nil }
        var ids = Set<Int64>()
        ids.reserveCapacity(data.count / 8)
        data.withUnsafeBytes { bytes in
            for offset in stride(from: 0, to: bytes.count - 7, by: 8) {
                ids.insert(Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int64.self)))
            }
        }
        return ids
    }

    /// Removes another run's file, once its leases are taken over.
    public func remove(owner: String) {
        let path = StartedCalls.path(databasePath: databasePath, owner: owner)
        unlink(path)
        unlink(path + StartedCalls.compactedSuffix)
    }

    /// Removes the files of runs on this host whose process is gone (their leases taken over already).
    public func removeGoneRuns() {
        let url = URL(fileURLWithPath: databasePath)
        let prefix = url.lastPathComponent + ".started."
        let folder = url.deletingLastPathComponent().path
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: folder) } catch { return }
        for name in names where name.hasPrefix(prefix) {
            let ownerText = name.dropFirst(prefix.count)
            let compacted = ownerText.hasSuffix(StartedCalls.compactedSuffix)
            guard let owner = LeaseOwner(String(compacted ? ownerText.dropLast(StartedCalls.compactedSuffix.count) : ownerText)),
                owner.isGoneFromThisHost
            else { continue }
            unlink(folder + "/" + name)
        }
    }
}
