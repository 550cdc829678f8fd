import Foundation
import PurserCore

/// A multipart/form-data body read as it arrives: text fields kept (small), the one file part written straight to
/// disk and hashed on the way, so an upload's size never shows in memory.
struct MultipartUpload {
    var fields: [String: String] = [:]
    var filename: String?
    var fileBytes: Int64 = 0
    var sha256 = ""

    /// The boundary from a Content-Type header, or nil when it is not multipart/form-data.
    static func boundary(in contentType: String?) -> String? {
        guard let contentType, contentType.lowercased().hasPrefix("multipart/form-data") else { return nil }
        for part in contentType.split(separator: ";").dropFirst() {
            let pair = part.trimmingCharacters(in: .whitespaces)
            if pair.lowercased().hasPrefix("boundary=") {
                var value = String(pair.dropFirst("boundary=".count))
                if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
                return value.isEmpty || value.utf8.count > 200 ? nil : value
            }
        }
        return nil
    }

    /// Reads the whole body: the part named `fileField` goes to `destination`, at most `maximumFileBytes` of it.
    static func read(_ body: HTTPBody, boundary: String, fileField: String, destination: String, maximumFileBytes: Int64) throws -> MultipartUpload {
        var upload = MultipartUpload()
        let delimiter = Array("\r\n--\(boundary)".utf8)
        var buffer: [UInt8] = [13, 10]  // so the first delimiter, at the very start, matches like the others
        var start = 0
        var ended = false

        func more() throws -> Bool {
            if start > 0 {
                buffer.removeFirst(start)
                start = 0
            }
            if ended { return false }
            if try body.read(into: &buffer, upTo: 262_144) == 0 { ended = true; return false }
            return true
        }
        func find(_ needle: [UInt8], from offset: Int) -> Int? {
            guard buffer.count - offset >= needle.count else { return nil }
            return buffer.withUnsafeBytes { haystack in
                needle.withUnsafeBytes { pattern -> Int? in
                    let base = haystack.baseAddress!
                    var index = offset
                    let last = buffer.count - needle.count
                    while index <= last {
                        guard let hit = memchr(base + index, Int32(needle[0]), last - index + 1) else { return nil }
                        index = base.distance(to: UnsafeRawPointer(hit))
                        if memcmp(base + index, pattern.baseAddress!, needle.count) == 0 { return index }
                        index += 1
                    }
                    return nil
                }
            }
        }
        // The preamble, up to the first delimiter.
        while true {
            if let found = find(delimiter, from: start) { start = found + delimiter.count; break }
            guard buffer.count - start < 65_536 else { throw HTTPFailure(400, "the multipart body has no boundary '\(boundary)'") }
            guard try more() else { throw HTTPFailure(400, "the multipart body has no boundary '\(boundary)'") }
        }
        while true {
            // After a delimiter: "--" ends the body, CRLF starts a part.
            while buffer.count - start < 2 { guard try more() else { throw HTTPFailure(400, "the multipart body ends inside a boundary line") } }
            if buffer[start] == 45 && buffer[start + 1] == 45 { break }
            guard buffer[start] == 13 && buffer[start + 1] == 10 else { throw HTTPFailure(400, "a multipart boundary line is not followed by a line break") }
            start += 2
            // The part's headers.
            var headerEnd: Int?
            while headerEnd == nil {
                headerEnd = find([13, 10, 13, 10], from: start)
                if headerEnd == nil {
                    guard buffer.count - start < 16_384 else { throw HTTPFailure(400, "a multipart part's headers pass 16 KiB") }
                    guard try more() else { throw HTTPFailure(400, "the multipart body ends inside a part's headers") }
                }
            }
            let headers = String(decoding: buffer[start..<headerEnd!], as: UTF8.self)
            start = headerEnd! + 4
            let (name, filename) = disposition(headers)
            guard let name else { throw HTTPFailure(400, "a multipart part has no Content-Disposition name") }
            if name == fileField {
                guard upload.filename == nil else { throw HTTPFailure(400, "more than one '\(fileField)' part") }
                upload.filename = filename ?? "upload.jsonl"
                guard FileManager.default.createFile(atPath: destination, contents: nil, attributes: [.posixPermissions: 0o600]),
                      let handle = FileHandle(forWritingAtPath: destination) else {
                    throw HTTPFailure(500, "cannot write the upload to the server's work folder")
                }
                do {
                    var hasher = SHA256()
                    while true {
                        if let found = find(delimiter, from: start) {
                            try write(buffer[start..<found])
                            start = found + delimiter.count
                            break
                        }
                        // Keep the tail that may be the start of a delimiter.
                        let safe = buffer.count - (delimiter.count - 1)
                        if safe > start {
                            try write(buffer[start..<safe])
                            start = safe
                        }
                        guard try more() else { throw HTTPFailure(400, "the multipart body ends inside the '\(fileField)' part") }
                    }
                    func write(_ bytes: ArraySlice<UInt8>) throws {
                        guard !bytes.isEmpty else { return }
                        upload.fileBytes += Int64(bytes.count)
                        if upload.fileBytes > maximumFileBytes { throw HTTPFailure(413, "the file passes \(maximumFileBytes) bytes, the most accepted") }
                        bytes.withUnsafeBytes { hasher.update($0) }
                        try handle.write(contentsOf: Data(bytes))
                    }
                    upload.sha256 = hasher.hex()
                    // Flushed and closed before the file is counted as stored: a failed close is a failed upload.
                    try handle.synchronize()
                    try handle.close()
                } catch {
                    // Failing already (the caller removes the file): the descriptor is let go whatever its close says.
                    _ = try? handle.close()
                    throw error
                }
            } else {
                while true {
                    if let found = find(delimiter, from: start) {
                        guard upload.fields.count < 32 else { throw HTTPFailure(400, "more than 32 form fields") }
                        upload.fields[name] = String(decoding: buffer[start..<found], as: UTF8.self)
                        start = found + delimiter.count
                        break
                    }
                    guard buffer.count - start < 8_192 else { throw HTTPFailure(400, "the form field '\(name.prefix(40))' passes 8 KiB") }
                    guard try more() else { throw HTTPFailure(400, "the multipart body ends inside the '\(name.prefix(40))' field") }
                }
            }
        }
        // Whatever follows the closing delimiter is an epilogue, read and dropped.
        while try more() { start = buffer.count }
        return upload
    }

    /// The name and filename of a part's Content-Disposition header.
    static func disposition(_ headers: String) -> (name: String?, filename: String?) {
        for line in headers.split(separator: "\r\n") where line.lowercased().hasPrefix("content-disposition:") {
            var name: String?, filename: String?
            for parameter in line.split(separator: ";").dropFirst() {
                let pair = parameter.trimmingCharacters(in: .whitespaces)
                guard let equals = pair.firstIndex(of: "=") else { continue }
                var value = String(pair[pair.index(after: equals)...])
                if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
                switch pair[..<equals].lowercased() {
                case "name": name = value
                case "filename": filename = value
                default: break
                }
            }
            return (name, filename)
        }
        return (nil, nil)
    }
}
