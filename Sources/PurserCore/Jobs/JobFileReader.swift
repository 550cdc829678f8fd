#if canImport(Glibc)
import Glibc
#endif

/// Streams the lines of a job file (or standard input) in fixed-size chunks, so memory does not
/// grow with the file. Handles `\n` and `\r\n`, a leading BOM, and lines over the size limit,
/// which are skipped without being buffered.
public final class JobFileReader {
    public enum Line {
        /// A line's bytes (without its terminator), valid until the next call.
        case text(lineNumber: Int, bytes: UnsafeBufferPointer<UInt8>)
        /// A line longer than the limit; its bytes were not kept.
        case oversized(lineNumber: Int, byteCount: Int)
    }

    public struct OpenFailure: Error, CustomStringConvertible {
        public let path: String
        public let reason: String
        public var description: String { "cannot read \(path): \(reason)" }
    }

    public let path: String
    public let maximumLineBytes: Int
    private let descriptor: Int32
    private let ownsDescriptor: Bool
    private var buffer: UnsafeMutableBufferPointer<UInt8>
    private var start = 0
    private var end = 0
    private var atEndOfFile = false
    private var lineNumber = 0
    private var isFirstLine = true
    public private(set) var fingerprint = ContentFingerprint()
    public private(set) var bytesRead = 0

    /// Opens `path`, or standard input when `path` is `-`.
    public init(path: String, maximumLineBytes: Int = 1 << 20, chunkBytes: Int = 1 << 20) throws {
        self.path = path
        self.maximumLineBytes = maximumLineBytes
        if path == "-" {
            descriptor = STDIN_FILENO
            ownsDescriptor = false
        } else {
            descriptor = open(path, O_RDONLY)
            guard descriptor >= 0 else { throw OpenFailure(path: path, reason: String(cString: strerror(errno))) }
            var status = stat()
            if fstat(descriptor, &status) == 0, (status.st_mode & S_IFMT) == S_IFDIR {
                close(descriptor)
                throw OpenFailure(path: path, reason: "it is a directory; name a .jsonl file")
            }
            ownsDescriptor = true
        }
        buffer = .allocate(capacity: max(chunkBytes, maximumLineBytes + 2) * 2)
    }

    deinit {
        buffer.deallocate()
        if ownsDescriptor { close(descriptor) }
    }

    /// The next non-blank line, or nil at the end of the input.
    public func nextLine() throws -> Line? {
        while true {
            if let newline = findNewline() {
                var lineEnd = newline
                let lineStart = start
                start = newline + 1
                lineNumber += 1
                if lineEnd > lineStart && buffer[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                if let line = deliver(lineStart, lineEnd) { return line }
                continue
            }
            if end - start > maximumLineBytes {
                return try skipOversizedLine()
            }
            if atEndOfFile {
                guard start < end else { return nil }
                lineNumber += 1
                var lineEnd = end
                let lineStart = start
                start = end
                if buffer[lineEnd - 1] == 0x0D { lineEnd -= 1 }
                if let line = deliver(lineStart, lineEnd) { return line }
                continue
            }
            try fill()
        }
    }

    private func deliver(_ lineStart: Int, _ lineEnd: Int) -> Line? {
        var from = lineStart
        if isFirstLine {
            isFirstLine = false
            if lineEnd - from >= 3, buffer[from] == 0xEF, buffer[from + 1] == 0xBB, buffer[from + 2] == 0xBF { from += 3 }
        }
        var blank = true
        for index in from..<lineEnd where !(buffer[index] == 0x20 || buffer[index] == 0x09 || buffer[index] == 0x0D) {
            blank = false
            break
        }
        if blank { return nil }
        if lineEnd - from > maximumLineBytes { return .oversized(lineNumber: lineNumber, byteCount: lineEnd - from) }
        return .text(lineNumber: lineNumber, bytes: UnsafeBufferPointer(rebasing: buffer[from..<lineEnd]))
    }

    private func findNewline() -> Int? {
        guard start < end else { return nil }
        let base = buffer.baseAddress! + start
        guard let found = memchr(base, 0x0A, end - start) else { return nil }
        return start + (UnsafeRawPointer(found) - UnsafeRawPointer(base))
    }

    private func skipOversizedLine() throws -> Line {
        isFirstLine = false
        lineNumber += 1
        var count = 0
        while true {
            if let newline = findNewline() {
                count += newline - start
                start = newline + 1
                return .oversized(lineNumber: lineNumber, byteCount: count)
            }
            count += end - start
            start = end
            if atEndOfFile { return .oversized(lineNumber: lineNumber, byteCount: count) }
            try fill()
        }
    }

    /// Moves unread bytes to the front and reads more.
    private func fill() throws {
        if start > 0 {
            let remaining = end - start
            if remaining > 0 { memmove(buffer.baseAddress!, buffer.baseAddress! + start, remaining) }
            start = 0
            end = remaining
        }
        let room = buffer.count - end
        precondition(room > 0, "line buffer full")
        let count = read(descriptor, buffer.baseAddress! + end, room)
        if count < 0 {
            if errno == EINTR { return }
            throw OpenFailure(path: path, reason: String(cString: strerror(errno)))
        }
        if count == 0 {
            atEndOfFile = true
            return
        }
        fingerprint.add(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[end..<end + count]))
        bytesRead += count
        end += count
    }

    /// Reads the whole input just to fingerprint it (a fast pre-pass for regular files).
    public static func fingerprint(ofFile path: String) throws -> ContentFingerprint {
        let reader = try JobFileReader(path: path)
        while !reader.atEndOfFile {
            reader.start = reader.end
            try reader.fill()
        }
        return reader.fingerprint
    }
}

/// A fast 128-bit fingerprint of a file's bytes, for recognising a resubmission of the same file.
/// Not cryptographic: it guards against accidents, not adversaries.
public struct ContentFingerprint: Sendable {
    private var lanes: (UInt64, UInt64) = (0x9E37_79B9_7F4A_7C15, 0xC2B2_AE3D_27D4_EB4F)
    private var length: UInt64 = 0
    private var pending: [UInt8] = []

    public init() {}

    public mutating func add(_ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        if !pending.isEmpty {
            while pending.count < 8 && offset < bytes.count { pending.append(bytes[offset]); offset += 1 }
            if pending.count == 8 {
                let word = pending.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                mix(word)
                pending.removeAll(keepingCapacity: true)
            }
        }
        while offset + 8 <= bytes.count {
            mix(bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            offset += 8
        }
        while offset < bytes.count { pending.append(bytes[offset]); offset += 1 }
        length &+= UInt64(bytes.count)
    }

    private mutating func mix(_ word: UInt64) {
        lanes.0 = (lanes.0 ^ word) &* 0x0000_0100_0000_01B3 &+ (lanes.0 >> 29)
        lanes.1 = ((lanes.1 &+ word) &* 0xFF51_AFD7_ED55_8CCD) ^ (lanes.1 >> 31)
    }

    /// 32 hex digits.
    public var hex: String {
        var copy = self
        var tail: UInt64 = 0
        for (index, byte) in copy.pending.enumerated() { tail |= UInt64(byte) << (8 * UInt64(index)) }
        copy.mix(tail ^ copy.length)
        func finish(_ value: UInt64) -> UInt64 {
            var x = value
            x ^= x >> 33; x &*= 0xFF51_AFD7_ED55_8CCD; x ^= x >> 33; x &*= 0xC4CE_B9FE_1A85_EC53; x ^= x >> 33
            return x
        }
        let high = String(finish(copy.lanes.0), radix: 16), low = String(finish(copy.lanes.1 ^ copy.lanes.0), radix: 16)
        return String(repeating: "0", count: 16 - high.count) + high + String(repeating: "0", count: 16 - low.count) + low
    }
}
