import Foundation
import PurserCore
import PurserSQLite

/// What a batch's job has done: its requests by state, what it spent, and its plan's estimate and baseline.
struct JobFigures: Sendable {
    var counts: [RequestState: Int] = [:]
    var spent = Money.zero
    var estimated = Money.zero
    var baseline = Money.zero

    init() {}

    init(job: Int64, store: StoreFile) throws {
        counts = try store.jobs.stateCounts(job: job)
        spent = try store.results.spend(job: job).cost
        (estimated, baseline) = try store.jobs.planTotals(job: job)
    }
}

/// A batch as its API shows it: the stored batch with its job's figures.
struct BatchView {
    var batch: ServiceBatch
    var figures = JobFigures()
    /// The batch's validation errors and metadata, read back from the JSON the service stored (a row that does not
    /// parse is an error, not an empty list).
    var errors: JSONValue = .null
    var metadata: JSONValue = .null

    /// The batch with its job's figures, which may be up to `JobFiguresCache.freshMilliseconds` old (many clients
    /// polling one batch read its job once, not once each); the batch's own status is always read fresh.
    init(_ batch: ServiceBatch, store: StoreFile, cache: JobFiguresCache? = nil) throws {
        self.batch = batch
        if let text = batch.errors { errors = try JSONParser.parse(text) }
        if let text = batch.metadata { metadata = try JSONParser.parse(text) }
        guard let job = batch.jobID else { return }
        if batch.status.isEnded || cache == nil {
            figures = try JobFigures(job: job, store: store)
        } else if let cache {
            figures = try cache.figures(job: job) { try JobFigures(job: job, store: store) }
        }
    }

    var counts: [RequestState: Int] { figures.counts }
    var spent: Money { figures.spent }
    var estimated: Money { figures.estimated }
    var baseline: Money { figures.baseline }
    var total: Int { counts.values.reduce(0, +) }

    var succeeded: Int { counts[.succeeded, default: 0] }
    var failed: Int { counts[.failed, default: 0] }
    var expired: Int { counts[.expired, default: 0] }
    var cancelled: Int { counts[.cancelled, default: 0] }
    var open: Int { total - succeeded - failed - expired - cancelled }

    /// The completion window in milliseconds (24h unless the create named another).
    var windowMilliseconds: Int64 { DurationText.milliseconds(batch.completionWindow) ?? 86_400_000 }

    /// Purser's own key: the job behind the batch, what it spent, what the plan expects and what the baseline would cost.
    var purser: JSONValue {
        var object = JSONObject([
            "job": batch.jobID.map { .number(String($0)) } ?? .null,
            "project": .string(batch.project),
            "spent_usd": .string(spent.exactUSD),
            "estimated_usd": .string(estimated.exactUSD),
            "baseline_usd": .string(baseline.exactUSD),
        ])
        object["requests"] = .object(JSONObject(RequestState.allCases.compactMap { state in
            counts[state].map { JSONObject.Member(key: state.rawValue, value: .number(String($0))) }
        }))
        return .object(object)
    }

    // MARK: - OpenAI

    var openAI: JSONObject {
        func seconds(_ milliseconds: Int64?) -> JSONValue { milliseconds.map { .number(String($0 / 1000)) } ?? .null }
        let ended = batch.endedAt
        return JSONObject([
            "id": .string(batch.id),
            "object": .string("batch"),
            "endpoint": .string(batch.endpoint),
            "errors": errors.isNull ? .null : .object(JSONObject(["object": .string("list"), "data": errors])),
            "input_file_id": batch.inputFileID.map(JSONValue.string) ?? .null,
            "completion_window": .string(batch.completionWindow),
            "status": .string(batch.status.rawValue),
            "output_file_id": batch.outputFileID.map(JSONValue.string) ?? .null,
            "error_file_id": batch.errorFileID.map(JSONValue.string) ?? .null,
            "created_at": seconds(batch.createdAt),
            "in_progress_at": seconds(batch.inProgressAt),
            "expires_at": seconds(batch.createdAt + windowMilliseconds),
            "finalizing_at": seconds(batch.finalizingAt),
            "completed_at": batch.status == .completed ? seconds(ended) : .null,
            "failed_at": batch.status == .failed ? seconds(ended) : .null,
            "expired_at": batch.status == .expired ? seconds(ended) : .null,
            "cancelling_at": seconds(batch.cancellingAt),
            "cancelled_at": batch.status == .cancelled ? seconds(ended) : .null,
            "request_counts": .object(JSONObject([
                "total": .number(String(total)), "completed": .number(String(succeeded)),
                "failed": .number(String(failed + expired + cancelled)),
            ])),
            "metadata": metadata,
            "purser": purser,
        ])
    }

    // MARK: - Anthropic

    var processingStatus: String {
        switch batch.status {
        case .validating, .inProgress, .finalizing: "in_progress"
        case .cancelling: "canceling"
        case .failed, .completed, .expired, .cancelled: "ended"
        }
    }

    func anthropic(origin: String) -> JSONObject {
        func time(_ milliseconds: Int64?) -> JSONValue { milliseconds.map { .string(BatchView.rfc3339($0)) } ?? .null }
        let ended = batch.status.isEnded
        return JSONObject([
            "id": .string(batch.id),
            "type": .string("message_batch"),
            "processing_status": .string(processingStatus),
            "request_counts": .object(JSONObject([
                "processing": .number(String(ended ? 0 : open)), "succeeded": .number(String(succeeded)), "errored": .number(String(failed)),
                "canceled": .number(String(cancelled)), "expired": .number(String(expired)),
            ])),
            "ended_at": ended ? time(batch.endedAt) : .null,
            "created_at": time(batch.createdAt),
            "expires_at": time(batch.createdAt + windowMilliseconds),
            "archived_at": .null,
            "cancel_initiated_at": time(batch.cancellingAt),
            "results_url": ended ? .string("\(origin)/v1/messages/batches/\(batch.id)/results") : .null,
            "purser": purser,
        ])
    }

    static func rfc3339(_ milliseconds: Int64) -> String {
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec)
    }
}

extension ServiceFile {
    /// OpenAI's FileObject.
    var openAI: JSONObject {
        JSONObject([
            "id": .string(id), "object": .string("file"), "bytes": .number(String(bytes)), "created_at": .number(String(createdAt / 1000)),
            "filename": .string(filename), "purpose": .string(purpose), "status": .string("processed"),
            "expires_at": expiresAt.map { .number(String($0 / 1000)) } ?? .null, "status_details": .null,
        ])
    }
}
