import Foundation
import Synchronization

/// Paid answers whose write to the database failed, kept in a file beside it (one JSON line each) so that
/// nothing bought is lost. The next run on that database stores them first, without calling again.
///
/// Each run writes a file of its own, `DB.recovery.PID`, whose disk space it sets aside before it calls anything
/// (allocated, read back as NUL bytes until written), so that answers bought while the disk fills up still fit:
/// nothing else can take that space. A run takes the files of processes that are gone (and `DB.recovery`, as
/// older runs wrote it) by renaming them, so two runs never store the same file twice (and the database's own
/// guard keeps any answer from being stored twice anyway).
public struct RecoveryFile: Sendable {
    /// `DB.recovery`: the name every recovery file starts with.
    public let path: String
    private let writer = Writer()

    public init(databasePath: String) { path = databasePath + ".recovery" }

    /// This process's file.
    public var ownPath: String { path + ".\(getpid())" }

    /// The open file and where the next answer goes in it.
    private final class Writer: Sendable {
        struct State {
            var descriptor: Int32 = -1
            var end: off_t = 0
        }
        let state = Mutex(State())
    }

    /// Opens this process's file and sets `bytes` of disk space aside in it.
    func open(reserving bytes: Int) throws {
        let ownPath = ownPath
        try writer.state.withLock { state in
            guard state.descriptor < 0 else { return }
            let descriptor = Foundation.open(ownPath, O_RDWR | O_CREAT, 0o600)
            guard descriptor >= 0 else { throw Problem("cannot create \(ownPath): \(String(cString: strerror(errno)))") }
            var status = stat()
            let end = fstat(descriptor, &status) == 0 ? status.st_size : 0
            let result = posix_fallocate(descriptor, end, off_t(bytes))
            guard result == 0 else {
                Foundation.close(descriptor)
                if end == 0 { unlink(ownPath) }
                throw Problem("cannot set \(bytes >> 20) MiB aside for \(ownPath) (\(String(cString: strerror(result)))); free some disk space first")
            }
            state = Writer.State(descriptor: descriptor, end: end)
        }
    }

    /// Cuts the file to what was written, and removes it when nothing was.
    func close() {
        let ownPath = ownPath
        writer.state.withLock { state in
            guard state.descriptor >= 0 else { return }
            _ = ftruncate(state.descriptor, state.end)
            Foundation.close(state.descriptor)
            if state.end == 0 { unlink(ownPath) }
            state = Writer.State()
        }
    }

    /// Appends one answer and flushes it to disk before returning; into the space set aside while it lasts.
    func append(_ answer: PaidAnswer) throws {
        let bytes = Array((JSONWriter.string(answer.json) + "\n").utf8)
        let ownPath = ownPath
        try writer.state.withLock { state in
            if state.descriptor < 0 {
                // Not opened (a test, or space could not be set aside): written as space allows.
                let descriptor = Foundation.open(ownPath, O_RDWR | O_CREAT, 0o600)
                guard descriptor >= 0 else { throw Problem("cannot write \(ownPath): \(String(cString: strerror(errno)))") }
                var status = stat()
                state = Writer.State(descriptor: descriptor, end: fstat(descriptor, &status) == 0 ? status.st_size : 0)
            }
            var written = 0
            while written < bytes.count {
                let count = bytes[written...].withUnsafeBytes { pwrite(state.descriptor, $0.baseAddress, $0.count, state.end + off_t(written)) }
                guard count > 0 else { throw Problem("cannot write \(ownPath): \(String(cString: strerror(errno)))") }
                written += count
            }
            guard fsync(state.descriptor) == 0 else { throw Problem("cannot flush \(ownPath): \(String(cString: strerror(errno)))") }
            state.end += off_t(written)
        }
    }

    /// Takes the files of processes that are gone (this one's too, left by an earlier process of the same id) and
    /// reads their answers; nil when there are none.
    func take() throws -> (answers: [PaidAnswer], taken: [String])? {
        let file = URL(fileURLWithPath: path)
        let folder = file.deletingLastPathComponent().path, base = file.lastPathComponent
        // A folder that cannot be listed would hide paid answers: it is an error, not "none".
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: folder) } catch {
            throw Problem("cannot look for recovery files in \(folder): \(error)")
        }
        var answers: [PaidAnswer] = [], taken: [String] = []
        for name in names.sorted() where name == base || name.hasPrefix(base + ".") {
            let suffix = name.dropFirst(base.count)
            if !suffix.isEmpty {
                guard let pid = Int32(suffix.dropFirst()), pid > 0, pid == getpid() || (kill(pid, 0) != 0 && errno == ESRCH) else { continue }
            }
            let source = folder + "/" + name, taking = source + ".\(getpid()).taking"
            guard rename(source, taking) == 0 else {
                if errno == ENOENT { continue }
                throw Problem("cannot take \(source): \(String(cString: strerror(errno)))")
            }
            taken.append(taking)
            guard let data = FileManager.default.contents(atPath: taking) else { throw Problem("cannot read \(taking)") }
            // Space set aside and never written reads as NUL bytes: they end the answers.
            let text = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
            for (index, line) in text.split(separator: "\n").enumerated() {
                // A line cut short by a crash while it was written is the only kind that cannot be read.
                let value: JSONValue
                do { value = try JSONParser.parse(String(line)) } catch {
                    throw Problem("\(source) line \(index + 1) cannot be read (\(error)); it is kept in \(taking)")
                }
                guard let answer = PaidAnswer(value) else {
                    throw Problem("\(source) line \(index + 1) is not a paid answer this version reads; it is kept in \(taking)")
                }
                answers.append(answer)
            }
        }
        return taken.isEmpty ? nil : (answers, taken)
    }

    /// Puts back the answers a run could not store, for the next one.
    func giveBack(_ answers: [PaidAnswer]) throws {
        for answer in answers { try append(answer) }
        close()
    }
}

/// A paid answer as one line of the recovery file: everything needed to store it without the run that received it.
extension PaidAnswer {
    var json: JSONValue {
        func number(_ value: Int64) -> JSONValue { .number(String(value)) }
        return .object(JSONObject([
            "request": number(requestID), "job": number(jobID), "tier": .string(tier), "max_output_tokens": number(Int64(maxOutputTokens)),
            "model": .string(model), "provider": .string(provider), "dialect": .string(dialect.rawValue), "mode": .string(mode.rawValue),
            "status": number(Int64(response.statusCode)), "provider_request_id": response.providerRequestID.map { .string($0) } ?? .null,
            "body": .string(response.body), "simulated": .bool(response.simulated),
            "input_tokens": number(Int64(response.usage.inputTokens)), "cached_input_tokens": number(Int64(response.usage.cachedInputTokens)),
            "cache_write_tokens": number(Int64(response.usage.cacheWriteTokens)), "output_tokens": number(Int64(response.usage.outputTokens)),
            "cost_pico": number(cost.picoUSD), "baseline_pico": number(baseline.picoUSD), "cache_saving_pico": number(cacheSaving.picoUSD),
            "finished_at": number(finishedAt),
            "started_at": number(attempt.startedAt), "latency_ms": number(attempt.latencyMilliseconds),
        ]))
    }

    init?(_ value: JSONValue) {
        guard let object = value.objectValue else { return nil }
        func int(_ key: String) -> Int64? { object[key]?.numberText.flatMap { Int64($0) } }
        guard let request = int("request"), let job = int("job"), let tier = object["tier"]?.stringValue, let maxOutput = int("max_output_tokens"),
            let model = object["model"]?.stringValue, let provider = object["provider"]?.stringValue,
            let dialect = object["dialect"]?.stringValue.flatMap(Provider.Dialect.init(rawValue:)),
            let mode = object["mode"]?.stringValue.flatMap(DispatchMode.init(rawValue:)), let status = int("status"),
            let body = object["body"]?.stringValue, let simulated = object["simulated"]?.boolValue, let input = int("input_tokens"),
            let cached = int("cached_input_tokens"), let written = int("cache_write_tokens"), let output = int("output_tokens"),
            let cost = int("cost_pico"), let baseline = int("baseline_pico"), let finished = int("finished_at"), let started = int("started_at"),
            let latency = int("latency_ms")
        else { return nil }
        let usage = Usage(inputTokens: Int(input), cachedInputTokens: Int(cached), cacheWriteTokens: Int(written), outputTokens: Int(output))
        self.init(
            requestID: request, jobID: job, tier: tier, maxOutputTokens: Int(maxOutput), model: model, provider: provider, dialect: dialect,
            mode: mode,
            response: ProviderResponse(
                statusCode: Int(status), providerRequestID: object["provider_request_id"]?.stringValue, body: body, usage: usage, simulated: simulated),
            cost: Money(picoUSD: cost), baseline: Money(picoUSD: baseline),
            attempt: AttemptRecord(
                model: model, provider: provider, mode: mode, startedAt: started, latencyMilliseconds: latency, status: Int(status),
                outcome: "succeeded", error: nil, usage: usage, simulated: simulated),
            finishedAt: finished)
        // Written by this purser and later; a file an older one wrote has none (then nothing is counted as saved).
        cacheSaving = Money(picoUSD: int("cache_saving_pico") ?? 0)
    }
}
