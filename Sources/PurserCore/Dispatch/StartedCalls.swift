import Foundation
import Synchronization

/// The requests a run has started calling, in a file beside the database (`DB.started.OWNER`): each request's id,
/// eight bytes, appended before its call is sent. It lets a run claim ahead of its calls without overstating what a
/// crash may have cost: when the run is killed, the next run takes over its leases and counts as unsettled (maybe
/// billed) only the requests in this file; those it had claimed and never called go back to the queue with their
/// reservations dropped.
///
/// The file has the durability of the database's own commits (`synchronous = NORMAL`): a note reaches the kernel
/// before the call is sent, so it outlives the process, not the machine. Notes go through a shared mapping of room
/// reserved on disk ahead of them (`NoteFile`): a store to memory rather than a `write` per call, which was 2.6% of a
/// 0 ms run's CPU. A note that cannot be written removes the file, so a later run counts every lease of this one as
/// maybe billed, as it would with no file at all. A long run (`--watch`, a serve) keeps the file small by writing it
/// again with only the requests it still holds (`beginCompacting`, `finishCompacting`).
public final class StartedCalls: Sendable {
    /// This run's file.
    public let path: String
    private let databasePath: String
    /// The file is written again once it holds this many bytes (a million calls).
    let compactingSize: Int64

    private struct Files {
        /// The open file; nil before `open`, after `close`, or once a note failed.
        var notes: NoteFile?
        /// The size at which the file is next written again: further off after an attempt failed.
        var compactAt: Int64 = 0
        /// While the file is written again: the new one, which takes every note as well until it replaces the old.
        var compacted: NoteFile?
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
            guard files.notes == nil else { return }
            files.notes = try NoteFile(creating: path)
            files.compactAt = compactingSize
        }
    }

    /// True while notes are being kept: a run claims ahead of its calls only then.
    public var isKept: Bool { files.withLock { $0.notes != nil } }

    /// Notes that the request's call is about to be sent. Nothing to do when no file is kept. When the note cannot be
    /// written the file is removed and no more notes are kept: returns why; throws only when the file cannot be removed
    /// either (a later run would then take the requests called since for never called).
    public func note(_ request: Int64) throws -> String? {
        try files.withLock { files in
            guard files.notes != nil else { return nil }
            var failure = withUnsafeBytes(of: request.littleEndian) { files.notes!.append($0) }
            if failure == nil, files.compacted != nil {
                failure = withUnsafeBytes(of: request.littleEndian) { files.compacted!.append($0) }
            }
            guard let failure else { return nil }
            try giveUp(&files, because: failure)
            return "cannot write \(path): \(failure)"
        }
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
    public var needsCompacting: Bool {
        files.withLock { files in
            guard let notes = files.notes, files.compacted == nil else { return false }
            return notes.size >= files.compactAt
        }
    }

    /// Starts writing the file again: from now on every note goes to the new file as well. The run then reads the
    /// requests it holds leased and hands them to `finishCompacting`: every call noted before this moment and still
    /// running is among them.
    public func beginCompacting() throws {
        let compactedPath = compactedPath
        try files.withLock { files in
            guard files.notes != nil, files.compacted == nil else { return }
            files.compacted = try NoteFile(creating: compactedPath)
        }
    }

    /// The new file takes the requests this run holds leased (read after `beginCompacting`) and replaces the old.
    public func finishCompacting(leased: [Int64]) throws {
        let (path, compactedPath) = (path, compactedPath)
        try files.withLock { files in
            guard let notes = files.notes, files.compacted != nil else { return }
            let bytes = leased.map(\.littleEndian)
            var failure = bytes.withUnsafeBytes { files.compacted!.append($0) }
                .map { "cannot write \(compactedPath) (\($0))" }
            if failure == nil, rename(compactedPath, path) != 0 {
                failure = "cannot replace \(path) with \(compactedPath) (\(String(cString: strerror(errno))))"
            }
            if let failure {
                // The old file still holds every note: only the new one goes, and the next attempt waits for twice the size.
                StartedCalls.drop(&files.compacted, at: compactedPath)
                files.compactAt = notes.size * 2
                throw Problem("\(failure); \(path) stays as it is")
            }
            files.notes?.close()
            files.notes = files.compacted
            files.compacted = nil
            files.compactAt = max(compactingSize, files.notes!.size * 2)
        }
    }

    /// Stops writing the file again (the leases could not be read); the old file stays, holding every note, and the
    /// next attempt waits for twice the size.
    public func abandonCompacting() {
        let compactedPath = compactedPath
        files.withLock { files in
            guard files.compacted != nil else { return }
            StartedCalls.drop(&files.compacted, at: compactedPath)
            files.compactAt = (files.notes?.size ?? 0) * 2
        }
    }

    /// Closes and removes the new file of an attempt to write the file again.
    private static func drop(_ file: inout NoteFile?, at path: String) {
        file?.close()
        file = nil
        unlink(path)
    }

    /// Closes the file; removes it when `remove` (the run ended holding no lease), or else leaves it for the run that
    /// takes the leases over.
    public func close(remove: Bool) {
        let path = path
        files.withLock { files in
            guard files.notes != nil else { return }
            shut(&files)
            if remove { unlink(path) }
        }
    }

    /// Closes both files and removes the new one of an attempt to write the file again, if any: no notes are kept.
    private func shut(_ files: inout Files) {
        files.notes?.close()
        files.compacted?.close()
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
                // Zeros: room reserved past the last note (a run killed before it closed its file). No request's id
                // is 0.
                let id = Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int64.self))
                if id != 0 { ids.insert(id) }
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

/// An append-only file of notes written through a shared mapping of room reserved on disk ahead of them. A note is a
/// copy to memory the kernel already holds for the file, so it outlives the process the moment it is made, as a
/// `write` would. The room is reserved (`posix_fallocate`) before it is mapped, so a full disk is met when room is
/// taken, as a refused note, never as a fault on a store. A file that cannot have room reserved (a device) is written
/// with `pwrite` instead.
struct NoteFile {
    private let descriptor: Int32
    /// The room reserved and mapped, when notes go through a mapping.
    private var mapping: UnsafeMutableRawPointer?
    private var room = 0
    /// Whether the notes go by `pwrite`: the file cannot have room reserved.
    private var written = false
    /// The bytes noted.
    private(set) var size: Int64 = 0

    /// Room is taken 64 KiB (8,192 notes) at a time at first, then as much again as the file holds, at most 8 MiB more.
    static let roomStep = 64 << 10
    static let mostRoomAtOnce = 8 << 20

    /// Creates the file at `path`, empty, or empties it.
    init(creating path: String) throws {
        let opened = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard opened >= 0 else { throw Problem("cannot create \(path): \(String(cString: strerror(errno)))") }
        descriptor = opened
    }

    /// Appends `bytes`; the error's words when they cannot be.
    mutating func append(_ bytes: UnsafeRawBufferPointer) -> String? {
        guard let source = bytes.baseAddress, !bytes.isEmpty else { return nil }
        let end = Int(size) + bytes.count
        if !written, end > room, let failure = reserve(atLeast: end) { return failure }
        guard !written, let mapping else { return write(bytes) }
        (mapping + Int(size)).copyMemory(from: source, byteCount: bytes.count)
        size = Int64(end)
        return nil
    }

    /// Reserves and maps room for at least `needed` bytes; the error's words when the disk has none (or the mapping
    /// fails). A file that cannot have room reserved is written from then on.
    private mutating func reserve(atLeast needed: Int) -> String? {
        let wanted = max(needed, room + min(max(room, NoteFile.roomStep), NoteFile.mostRoomAtOnce))
        let grown = (wanted + NoteFile.roomStep - 1) / NoteFile.roomStep * NoteFile.roomStep
        let reserved = posix_fallocate(descriptor, 0, off_t(grown))
        if reserved == ENODEV || reserved == ESPIPE {
            written = true
            return nil
        }
        guard reserved == 0 else { return String(cString: strerror(reserved)) }
        let mapped = mmap(nil, grown, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0)
        guard let mapped, mapped != MAP_FAILED else { return "cannot map it: \(String(cString: strerror(errno)))" }
        if let mapping { munmap(mapping, room) }
        (mapping, room) = (mapped, grown)
        return nil
    }

    private mutating func write(_ bytes: UnsafeRawBufferPointer) -> String? {
        let done = pwrite(descriptor, bytes.baseAddress, bytes.count, off_t(size))
        guard done != bytes.count else {
            size += Int64(done)
            return nil
        }
        // A short write leaves a partial id, which `StartedCalls.read` ignores; the file goes anyway, as after a
        // failed one.
        return done < 0 ? String(cString: strerror(errno)) : "only \(done) of \(bytes.count) bytes were written"
    }

    /// Unmaps and closes the file, cutting off the room reserved past the last note. Should the cut fail, the zeros
    /// left are skipped when the file is read.
    mutating func close() {
        if let mapping {
            munmap(mapping, room)
            _ = ftruncate(descriptor, off_t(size))
        }
        (mapping, room) = (nil, 0)
        Foundation.close(descriptor)
    }
}
