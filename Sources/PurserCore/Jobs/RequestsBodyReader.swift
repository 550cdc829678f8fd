#if canImport(Glibc)
import Glibc
#endif

/// Where a job file's lines come from: JSONL read line by line, or an Anthropic Message Batches request body
/// (`{"requests": [...]}`, as POSTed to `/v1/messages/batches`) read request by request.
public protocol JobLineSource: AnyObject {
    func nextLine() throws -> JobFileReader.Line?
    var fingerprint: ContentFingerprint { get }
}

extension JobFileReader: JobLineSource {}

public enum JobLines {
    /// The lines of `path` (`-` for standard input): each request of a `{"requests": [...]}` body, or each line of
    /// a JSONL file. A body is recognised by its start: `{` and then the key `requests`.
    public static func open(path: String, maximumLineBytes: Int) throws -> any JobLineSource {
        if path != "-", try RequestsBodyReader.isRequestsBody(path: path) {
            return try RequestsBodyReader(path: path, maximumLineBytes: maximumLineBytes)
        }
        return try JobFileReader(path: path, maximumLineBytes: maximumLineBytes)
    }
}

/// Streams the requests of an Anthropic Message Batches request body, one element of its `requests` array at a
/// time, each handed over like a JSONL line (numbered by the line of the file it starts on), so memory stays
/// bounded by the largest request, never the file. Each element is the Anthropic batch line shape,
/// `{"custom_id": …, "params": {…}}`.
final class RequestsBodyReader: JobLineSource {
    let path: String
    let maximumLineBytes: Int
    private let descriptor: Int32
    private var chunk: [UInt8]
    private var chunkStart = 0, chunkEnd = 0
    private var atEndOfFile = false
    private(set) var fingerprint = ContentFingerprint()

    // The scanner's state.
    private enum Phase { case seekingRequests, inArray, done }
    private var phase = Phase.seekingRequests
    private var depth = 0
    private var inString = false, escaped = false
    private var lineNumber = 1
    private var expectingKey = false
    private var key: [UInt8] = [], capturingKey = false
    private var lastKey: [UInt8] = [], valueOf: [UInt8]?
    private var element: [UInt8] = []
    private var elementLine = 0, elementBytes = 0, inElement = false
    private var isFirstByte = true
    /// Bytes of a leading BOM still to skip.
    private var skipBOM = 0

    private static let requestsKey = Array("requests".utf8)

    /// True when the file starts (after a BOM and white space) with `{` and then the key `"requests"`.
    static func isRequestsBody(path: String) throws -> Bool {
        let descriptor = Glibc.open(path, O_RDONLY)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var head = [UInt8](repeating: 0, count: 4096)
        let count = read(descriptor, &head, head.count)
        guard count > 0 else { return false }
        var bytes = head[0..<count]
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        let significant = bytes.filter { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
        return significant.starts(with: Array("{\"requests\"".utf8))
    }

    init(path: String, maximumLineBytes: Int, chunkBytes: Int = 1 << 20) throws {
        self.path = path
        self.maximumLineBytes = maximumLineBytes
        descriptor = Glibc.open(path, O_RDONLY)
        guard descriptor >= 0 else { throw JobFileReader.OpenFailure(path: path, reason: String(cString: strerror(errno))) }
        chunk = [UInt8](repeating: 0, count: chunkBytes)
        output = .allocate(capacity: maximumLineBytes + 1)
    }

    deinit {
        output.deallocate()
        close(descriptor)
    }

    /// Where the last request handed over is kept, until the next call.
    private let output: UnsafeMutableBufferPointer<UInt8>

    func nextLine() throws -> JobFileReader.Line? {
        while true {
            if chunkStart == chunkEnd {
                if atEndOfFile { return try finish() }
                try fill()
                continue
            }
            let byte = chunk[chunkStart]
            chunkStart += 1
            if let line = try scan(byte) { return line }
        }
    }

    private func fill() throws {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { return }
            throw JobFileReader.OpenFailure(path: path, reason: String(cString: strerror(errno)))
        }
        if count == 0 { atEndOfFile = true; return }
        chunk.withUnsafeBytes { fingerprint.add(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        chunkStart = 0
        chunkEnd = count
    }

    private func finish() throws -> JobFileReader.Line? {
        switch phase {
        case .done: return nil
        case .seekingRequests: throw Problem("\(path): a {\"requests\": [...]} body whose \"requests\" array was not found; give an array of {\"custom_id\", \"params\"} objects")
        case .inArray: throw Problem("\(path): the {\"requests\": [...]} body ends before its array closes (line \(lineNumber)); the file is cut short")
        }
    }

    /// Feeds one byte; returns a request when one ends with it.
    private func scan(_ byte: UInt8) throws -> JobFileReader.Line? {
        if isFirstByte {
            isFirstByte = false
            if byte == 0xEF { skipBOM = 2; return nil }
        }
        if skipBOM > 0 { skipBOM -= 1; return nil }
        if byte == 0x0A { lineNumber += 1 }
        if inElement { return scanElement(byte) }
        if phase == .inArray && depth == 2 {
            switch byte {
            case 0x20, 0x09, 0x0A, 0x0D, 0x2C: return nil
            case 0x5D:
                phase = .done
                depth = 1
                return nil
            default:
                inElement = true
                elementLine = lineNumber
                elementBytes = 0
                element.removeAll(keepingCapacity: true)
                return scanElement(byte)
            }
        }
        if inString {
            if escaped { escaped = false } else if byte == 0x5C { escaped = true } else if byte == 0x22 {
                inString = false
                if capturingKey { capturingKey = false; lastKey = key; expectingKey = false }
                return nil
            }
            if capturingKey && key.count < 64 { key.append(byte) }
            return nil
        }
        switch byte {
        case 0x22:
            inString = true
            if depth == 1 && expectingKey { capturingKey = true; key = [] }
        case 0x7B:
            depth += 1
            if depth == 1 { expectingKey = true }
        case 0x7D: depth -= 1
        case 0x2C where depth == 1:
            expectingKey = true
            valueOf = nil
        case 0x3A where depth == 1: valueOf = lastKey
        case 0x5B:
            depth += 1
            if depth == 2 && phase == .seekingRequests && valueOf == RequestsBodyReader.requestsKey { phase = .inArray }
        case 0x5D: depth -= 1
        default: break
        }
        return nil
    }

    /// One byte of an element of the array: an object (or any value), up to where it closes at the array's depth.
    private func scanElement(_ byte: UInt8) -> JobFileReader.Line? {
        if inString {
            if escaped { escaped = false } else if byte == 0x5C { escaped = true } else if byte == 0x22 { inString = false }
            return keep(byte)
        }
        switch byte {
        case 0x22:
            inString = true
        case 0x7B, 0x5B:
            depth += 1
        case 0x7D, 0x5D:
            if depth == 2 {
                // The array closes right after a value that is not an object or array.
                let line = emit()
                phase = .done
                depth = 1
                return line
            }
            depth -= 1
            _ = keep(byte)
            return depth == 2 ? emit() : nil
        case 0x2C where depth == 2:
            return emit()
        default:
            break
        }
        return keep(byte)
    }

    private func keep(_ byte: UInt8) -> JobFileReader.Line? {
        elementBytes += 1
        if element.count <= maximumLineBytes { element.append(byte) }
        return nil
    }

    /// The element just closed, as a line: its bytes stay valid until the next call.
    private func emit() -> JobFileReader.Line {
        inElement = false
        if elementBytes > maximumLineBytes { return .oversized(lineNumber: elementLine, byteCount: elementBytes) }
        _ = output.initialize(from: element)
        return .text(lineNumber: elementLine, bytes: UnsafeBufferPointer(rebasing: output[0..<element.count]))
    }
}
