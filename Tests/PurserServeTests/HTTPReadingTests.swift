import Foundation
import Testing
import PurserCore
@testable import PurserServe
import TestSupport

/// A connection over a socket pair: what the test writes into one end, the server's reader reads from the other.
private func connection(sending bytes: [UInt8], limits: HTTPLimits = HTTPLimits()) throws -> HTTPConnection {
    var ends: [Int32] = [0, 0]
    try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends) == 0)
    // The writer sends in small pieces from a thread of its own, so reads see every split a network can make.
    let writer = ends[1]
    Thread.detachNewThread {
        var offset = 0
        var size = 1
        while offset < bytes.count {
            let piece = Array(bytes[offset..<min(offset + size, bytes.count)])
            _ = piece.withUnsafeBytes { write(writer, $0.baseAddress, $0.count) }
            offset += piece.count
            size = size * 3 % 1_021 + 1
        }
        close(writer)
    }
    return HTTPConnection(descriptor: ends[0], limits: limits)
}

private func multipart(boundary: String, purpose: String, file: [UInt8], filename: String = "in.jsonl") -> [UInt8] {
    Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n\(purpose)\r\n--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(filename)\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8)
        + file + Array("\r\n--\(boundary)--\r\n".utf8)
}

private func request(_ body: [UInt8], boundary: String) -> [UInt8] {
    Array("POST /v1/files HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=\(boundary)\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
}

@Test func anUploadSplitAnywhereIsWrittenToDiskByteForByte() throws {
    // Bytes that look like the start of a boundary, line breaks and dashes, inside the file.
    var file: [UInt8] = []
    for index in 0..<20_000 { file += Array("line \(index) \r\n--not-the-boundary --\r\n-".utf8) }
    let boundary = "----purser-test-boundary"
    let body = multipart(boundary: boundary, purpose: "batch", file: file)
    let reader = try connection(sending: request(body, boundary: boundary))
    let head = try #require(try reader.readHead())
    #expect(head.method == "POST" && head.path == "/v1/files")
    let destination = testFiles.appendingPathComponent("upload-\(UUID().uuidString)").path
    defer { unlink(destination) }
    let upload = try MultipartUpload.read(try HTTPBody(connection: reader, request: head, limit: 1 << 30), boundary: boundary, fileField: "file",
        destination: destination, maximumFileBytes: 1 << 30)
    #expect(upload.fields["purpose"] == "batch" && upload.filename == "in.jsonl")
    #expect(upload.fileBytes == Int64(file.count))
    #expect(try Data(contentsOf: URL(fileURLWithPath: destination)) == Data(file))
    #expect(upload.sha256 == SHA256.hex(of: file))
}

@Test func anUploadPastItsLimitOrWithoutItsBoundaryIsRefused() throws {
    let boundary = "b0undary"
    let big = multipart(boundary: boundary, purpose: "batch", file: [UInt8](repeating: 65, count: 10_000))
    let reader = try connection(sending: request(big, boundary: boundary))
    let head = try #require(try reader.readHead())
    let destination = testFiles.appendingPathComponent("upload-\(UUID().uuidString)").path
    defer { unlink(destination) }
    #expect(throws: HTTPFailure.self) {
        try MultipartUpload.read(try HTTPBody(connection: reader, request: head, limit: 1 << 20), boundary: boundary, fileField: "file",
            destination: destination, maximumFileBytes: 5_000)
    }
    let wrong = try connection(sending: request(Array("no boundary here at all".utf8), boundary: boundary))
    let wrongHead = try #require(try wrong.readHead())
    #expect(throws: HTTPFailure.self) {
        try MultipartUpload.read(try HTTPBody(connection: wrong, request: wrongHead, limit: 1 << 20), boundary: boundary, fileField: "file",
            destination: destination, maximumFileBytes: 1 << 20)
    }
    #expect(MultipartUpload.boundary(in: "multipart/form-data; boundary=\"quoted\"") == "quoted")
    #expect(MultipartUpload.boundary(in: "application/json") == nil)
}

@Test func chunkedBodiesAreReadAndBodiesPastTheLimitRefusedBeforeTheyAreRead() throws {
    let chunked = Array("POST /v1/batches HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n".utf8)
    let reader = try connection(sending: chunked)
    let head = try #require(try reader.readHead())
    let body = try HTTPBody(connection: reader, request: head, limit: 100)
    #expect(String(decoding: try body.readAll(), as: UTF8.self) == "hello, world" && body.isFinished)

    let declared = try connection(sending: Array("POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n".utf8))
    let declaredHead = try #require(try declared.readHead())
    #expect(throws: HTTPFailure.self) { try HTTPBody(connection: declared, request: declaredHead, limit: 1000) }

    let overrun = try connection(sending: Array("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n".utf8) + [UInt8](repeating: 66, count: 2048) + Array("\r\n0\r\n\r\n".utf8))
    let overrunHead = try #require(try overrun.readHead())
    #expect(throws: HTTPFailure.self) { try HTTPBody(connection: overrun, request: overrunHead, limit: 1000).readAll() }
}

@Test func requestHeadsAreParsedAndBadOnesRefusedWithTheirStatus() throws {
    let head = try HTTPConnection.parse("GET /v1/files/file-1%20x?limit=2&order=asc&after=file-0 HTTP/1.1\r\nHost: x\r\nAccept: a\r\naccept: b\r\nCookie: one=1; purser_session=abc")
    #expect(head.path == "/v1/files/file-1 x" && head.segments == ["v1", "files", "file-1 x"])
    #expect(head.query == ["limit": "2", "order": "asc", "after": "file-0"])
    #expect(head.headers["accept"] == "a, b" && head.cookie("purser_session") == "abc" && head.cookie("none") == nil)
    for bad in ["GET", "GET / FTP/1.0", "GET relative HTTP/1.1", "GET / HTTP/1.1\r\nno colon"] {
        #expect(throws: HTTPFailure.self, "\(bad)") { try HTTPConnection.parse(bad) }
    }
    var limits = HTTPLimits()
    limits.headerBytes = 100
    let huge = try connection(sending: Array("GET / HTTP/1.1\r\nX: \(String(repeating: "y", count: 500))\r\n\r\n".utf8), limits: limits)
    do {
        _ = try huge.readHead()
        Issue.record("a head past the limit was read")
    } catch let failure as HTTPFailure {
        #expect(failure.status == 431)
    }
}
