import Foundation
import Synchronization

/// Reads and checks a job file on its own thread and hands the results over in bounded batches,
/// so parsing (one core) overlaps storing (the caller's core). Memory stays bounded: at most
/// `maximumBatches` batches wait at any time.
package final class ParsedLineStream: Sendable {
    package enum Item: Sendable {
        case request(RequestDraft)
        case problem(LineProblem)
    }

    package enum Message: Sendable {
        case batch([Item])
        case finished(ContentFingerprint)
        case failed(String)
    }

    private struct State {
        var messages: [Message] = []
        var cancelled = false
    }

    private let state = Mutex(State())
    private let available = DispatchSemaphore(value: 0)
    private let space: DispatchSemaphore
    package static let batchSize = 512
    package static let maximumBatches = 8

    /// Starts reading `file` at once. The reader is opened before returning, so a missing file throws here.
    package init(file: String, maximumLineBytes: Int, makeParser: @escaping @Sendable () -> RequestLineParser) throws {
        space = DispatchSemaphore(value: ParsedLineStream.maximumBatches)
        let reader = try JobLines.open(path: file, maximumLineBytes: maximumLineBytes)
        let handOver = UncheckedBox(reader)
        let thread = Thread { [self] in
            self.produce(reader: handOver.value, parser: makeParser(), maximumLineBytes: maximumLineBytes)
        }
        thread.stackSize = 8 << 20
        thread.start()
    }

    private func produce(reader: any JobLineSource, parser: RequestLineParser, maximumLineBytes: Int) {
        var parser = parser
        var batch: [Item] = []
        batch.reserveCapacity(ParsedLineStream.batchSize)
        do {
            while let line = try reader.nextLine() {
                switch line {
                case .oversized(let lineNumber, let byteCount):
                    batch.append(.problem(.oversized(lineNumber: lineNumber, byteCount: byteCount, limit: maximumLineBytes)))
                case .text(let lineNumber, let bytes):
                    switch parser.parse(bytes, lineNumber: lineNumber) {
                    case .success(let draft): batch.append(.request(draft))
                    case .failure(let problem): batch.append(.problem(problem))
                    }
                }
                if batch.count == ParsedLineStream.batchSize {
                    guard send(.batch(batch)) else { return }
                    batch.removeAll(keepingCapacity: true)
                }
            }
            if !batch.isEmpty { guard send(.batch(batch)) else { return } }
            _ = send(.finished(reader.fingerprint))
        } catch {
            _ = send(.failed("\(error)"))
        }
    }

    /// Waits for room, then queues `message`; false once the consumer has gone away.
    private func send(_ message: Message) -> Bool {
        space.wait()
        let cancelled = state.withLock { state in
            if !state.cancelled { state.messages.append(message) }
            return state.cancelled
        }
        available.signal()
        return !cancelled
    }

    /// The next message, waiting for one if needed.
    package func next() -> Message {
        available.wait()
        let message = state.withLock { $0.messages.removeFirst() }
        space.signal()
        return message
    }

    /// Stops the reading thread early (the consumer failed): it finishes its current batch and exits.
    package func cancel() {
        state.withLock { $0.cancelled = true }
        // Wake the producer if it waits for room; it sees the flag and stops.
        for _ in 0..<ParsedLineStream.maximumBatches { space.signal() }
    }
}

/// Moves a value that is not `Sendable` to another thread that becomes its only user.
struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
