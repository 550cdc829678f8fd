import Foundation

/// Paid answers whose write to the database failed, kept in a file beside it (`DB.recovery`, one JSON line
/// each) so that nothing bought is lost. The next run on that database stores them first, without calling
/// again. A run takes the file by renaming it, so two runs never store the same file twice (and the
/// database's own guard keeps any answer from being stored twice anyway).
public struct RecoveryFile: Sendable {
    public let path: String

    public init(databasePath: String) { path = databasePath + ".recovery" }

    /// A file of zeros beside the recovery file (`DB.recovery-space`), written before the run calls anything and
    /// given back to the disk when an append finds it full, so that answers bought while the disk fills up still
    /// reach the recovery file.
    var spacePath: String { path + "-space" }

    /// Sets `bytes` of disk space aside for the recovery file.
    func setSpaceAside(bytes: Int) throws {
        let descriptor = open(spacePath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else { throw Problem("cannot create \(spacePath): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        let result = posix_fallocate(descriptor, 0, off_t(bytes))
        guard result == 0 else {
            unlink(spacePath)
            throw Problem("cannot set \(bytes >> 20) MiB aside for \(path) (\(String(cString: strerror(result)))); free some disk space first")
        }
    }

    /// Gives the space set aside back to the disk; true when there was some.
    @discardableResult
    func releaseSpace() -> Bool { unlink(spacePath) == 0 }

    /// Removes the file when nothing was kept in it.
    func removeIfEmpty() {
        var status = stat()
        if stat(path, &status) == 0, status.st_size == 0 { unlink(path) }
    }

    /// Appends one answer and flushes it to disk before returning. On a full disk the space set aside is given
    /// back and the answer written again (a line cut short by the full disk is taken off first).
    func append(_ answer: RecoveredAnswer) throws {
        let bytes = Array((JSONWriter.string(answer.json) + "\n").utf8)
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        guard descriptor >= 0 else { throw Problem("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        let start = lseek(descriptor, 0, SEEK_END)
        for attempt in 0..<2 {
            var written = 0, failure: Int32 = 0
            while written < bytes.count {
                let count = bytes[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
                guard count > 0 else { failure = errno; break }
                written += count
            }
            if failure == 0, fsync(descriptor) == 0 { return }
            if failure == 0 { failure = errno }
            let full = failure == ENOSPC || failure == EDQUOT
            guard attempt == 0, full, start >= 0, ftruncate(descriptor, start) == 0, releaseSpace() else {
                throw Problem("cannot write \(path): \(String(cString: strerror(failure)))")
            }
        }
    }

    /// Takes the file for this process and reads its answers; nil when there is none.
    func take() throws -> (answers: [RecoveredAnswer], taken: String)? {
        let taken = path + ".\(getpid()).taking"
        guard rename(path, taken) == 0 else {
            if errno == ENOENT { return nil }
            throw Problem("cannot take \(path): \(String(cString: strerror(errno)))")
        }
        guard let data = FileManager.default.contents(atPath: taken) else { throw Problem("cannot read \(taken)") }
        var answers: [RecoveredAnswer] = []
        for (index, line) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated() {
            // A line cut short by a crash while it was written is the only kind that cannot be read.
            guard let value = try? JSONParser.parse(String(line)), let answer = RecoveredAnswer(value) else {
                throw Problem("\(path) line \(index + 1) cannot be read; it is kept in \(taken)")
            }
            answers.append(answer)
        }
        return (answers, taken)
    }

    /// Puts back the answers a run could not store, for the next one.
    func giveBack(_ answers: [RecoveredAnswer]) throws {
        for answer in answers { try append(answer) }
    }
}

/// Everything needed to store a paid answer without the run that received it.
struct RecoveredAnswer: Sendable {
    var requestID: Int64
    var jobID: Int64
    var tier: String
    var maxOutputTokens: Int
    var model: String
    var provider: String
    var dialect: Provider.Dialect
    var mode: DispatchMode
    var response: ProviderResponse
    var cost: Money
    var baseline: Money
    var attempt: AttemptRecord
    var finishedAt: Int64

    var json: JSONValue {
        func number(_ value: Int64) -> JSONValue { .number(String(value)) }
        return .object(JSONObject([
            "request": number(requestID), "job": number(jobID), "tier": .string(tier), "max_output_tokens": number(Int64(maxOutputTokens)),
            "model": .string(model), "provider": .string(provider), "dialect": .string(dialect.rawValue), "mode": .string(mode.rawValue),
            "status": number(Int64(response.statusCode)), "provider_request_id": response.providerRequestID.map { .string($0) } ?? .null,
            "body": .string(response.body), "simulated": .bool(response.simulated),
            "input_tokens": number(Int64(response.usage.inputTokens)), "cached_input_tokens": number(Int64(response.usage.cachedInputTokens)),
            "cache_write_tokens": number(Int64(response.usage.cacheWriteTokens)), "output_tokens": number(Int64(response.usage.outputTokens)),
            "cost_pico": number(cost.picoUSD), "baseline_pico": number(baseline.picoUSD), "finished_at": number(finishedAt),
            "started_at": number(attempt.startedAt), "latency_ms": number(attempt.latencyMilliseconds),
        ]))
    }

    init(
        requestID: Int64, jobID: Int64, tier: String, maxOutputTokens: Int, model: String, provider: String, dialect: Provider.Dialect,
        mode: DispatchMode, response: ProviderResponse, cost: Money, baseline: Money, attempt: AttemptRecord, finishedAt: Int64
    ) {
        self.requestID = requestID
        self.jobID = jobID
        self.tier = tier
        self.maxOutputTokens = maxOutputTokens
        self.model = model
        self.provider = provider
        self.dialect = dialect
        self.mode = mode
        self.response = response
        self.cost = cost
        self.baseline = baseline
        self.attempt = attempt
        self.finishedAt = finishedAt
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
    }
}
