import Foundation
import PurserCore
import SQLiteStore

/// The batch side of the dispatch store: every batch step is one transaction here, and every change of a
/// request's state goes through `RequestLifecycle`.
extension DispatchStore {
    // MARK: - Forming batches


    /// Puts ready requests planned for batch mode into new batches, one model per batch, cut to the API's limits,
    /// in deadline order. Each request's worst case at batch prices is reserved under its caps in the same
    /// transaction (the batch's requests are then `running` under the batch's lease), or it is held or left for
    /// later, as for a live call. Requests whose provider cannot take batches any more are planned again.
    public func formBatches(
        now: Int64, job: Int64?, excludedModels: [String], simulated: Bool, catalog: PricingCatalog
    ) throws -> FormedBatches {
        let excluded = JSONWriter.string(.array(excludedModels.map { .string($0) }))
        return try database.writeTransaction {
            try lifecycle.stage(now: now)
            // Each ready request's plan line is read before its request (a `CROSS JOIN` keeps that order in SQLite), so
            // the many planned for live calls are passed over without a read of their rows: this runs every second of
            // a run, over every ready request (3.7 ms rather than 6.3 for 15,000 of them).
            let candidates = try database.statement("""
                SELECT r.id, r.job_id, j.project, r.input_tokens, r.max_output_tokens, l.model, r.deadline_at, length(b.body)
                FROM request_plans p CROSS JOIN plan_lines l ON l.id = p.line CROSS JOIN requests r ON r.id = p.request_id
                    JOIN jobs j ON j.id = r.job_id JOIN request_bodies b ON b.request_id = r.id
                WHERE p.queue = \(RequestLifecycle.Queue.ready.sql) AND l.mode = 'batch' AND (?1 IS NULL OR r.job_id = ?1) AND l.model NOT IN (SELECT value FROM json_each(?2))
                ORDER BY l.model, p.deadline_at, p.request_id
                """).rows([.optionalInt64(job), .text(excluded)]) { row in
                (id: row.int64(0), job: row.int64(1), project: row.text(2), input: row.int(3), output: row.int(4), model: row.text(5),
                    deadline: row.int64(6), bytes: row.int(7))
            }
            var formed = FormedBatches()
            let month = BudgetMonth(containing: now)
            var admission = try Ledger(database: database).admission(for: candidates.map { ($0.project, $0.job) }, month: month, simulated: simulated)
            let timing = catalog.tiers.batch
            var unbatchable: [Int64] = []
            var start = 0
            while start < candidates.count {
                let modelID = candidates[start].model
                var end = start
                while end < candidates.count && candidates[end].model == modelID { end += 1 }
                defer { start = end }
                guard let model = catalog.model(id: modelID), let provider = catalog.providers[model.provider], let dialect = provider.batchDialect,
                    model.batchPrices != nil
                else {
                    unbatchable += candidates[start..<end].map(\.id)
                    continue
                }
                let limits = BatchInput.limits(dialect)
                var index = start
                while index < end {
                    // One batch: a row first, so its id names the lease of the requests it takes.
                    try database.statement("""
                        INSERT INTO batches (key, provider, model, dialect, simulated, state, request_count, planned_at, pull_back_at)
                        VALUES (?, ?, ?, ?, ?, 'planned', 0, ?, ?)
                        """).execute([
                        .text("pb_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")), .text(provider.name), .text(model.id),
                        .text(dialect.rawValue), .int(simulated ? 1 : 0), .integer(now), .integer(Int64.max),
                    ])
                    let batchID = database.lastInsertRowID
                    let owner = BatchRow.owner(batchID)
                    var members: [Int64] = [], bytes = 0, pullBack = Int64.max
                    while index < end && members.count < limits.requests && bytes < limits.bytes {
                        let candidate = candidates[index]
                        index += 1
                        let amount = Charges.worstCase(model: model, mode: .batch, inputTokens: candidate.input, maxOutputTokens: candidate.output)
                        guard try admit(
                            candidate.id, amount: amount, job: candidate.job, project: candidate.project, at: now, owner: owner,
                            admission: &admission, tally: &formed)
                        else { continue }
                        try database.statement("INSERT INTO batch_requests (request_id, batch_id, line, provider_custom_id) VALUES (?, ?, ?, ?)")
                            .execute([
                                .integer(candidate.id), .integer(batchID), .int(members.count),
                                .text(BatchInput.providerCustomID(database: databaseID, batch: batchID, request: candidate.id)),
                            ])
                        members.append(candidate.id)
                        bytes += candidate.bytes + 200
                        // The moment it must leave the batch to be served live in time.
                        pullBack = min(pullBack, candidate.deadline - model.speed.callDuration(outputTokens: candidate.output) - timing.pullBackMilliseconds)
                    }
                    guard !members.isEmpty else {
                        try database.statement("DELETE FROM batches WHERE id = ?").execute([.integer(batchID)])
                        continue
                    }
                    try lifecycle.leaseToBatch(members, owner: owner)
                    try database.statement("UPDATE batches SET request_count = ?, input_bytes = ?, pull_back_at = ? WHERE id = ?")
                        .execute([.int(members.count), .int(bytes), .integer(pullBack), .integer(batchID)])
                    formed.batches.append(try batch(batchID)!)
                }
            }
            try lifecycle.unplan(unbatchable, reason: "its provider no longer takes batches for this model; planned again")
            formed.capUses = admission.uses
            return formed
        }
    }

    // MARK: - Advancing batches

    /// Open batches due for a step (a send, a poll, their results, a pull-back), which this run takes the lease
    /// of: unowned ones, its own, those whose lease lapsed, and those of a process on this host that is gone.
    public func batchesToAdvance(now: Int64, leaseUntil: Int64) throws -> [BatchRow] {
        try database.writeTransaction {
            let due = try database.statement("""
                SELECT id, owner, lease_expires_at FROM batches
                WHERE state != 'done' AND (next_poll_at IS NULL OR next_poll_at <= ?1
                    OR (state = 'created' AND cancel_requested_at IS NULL AND pull_back_at <= ?1))
                ORDER BY id
                """).rows([.integer(now)]) { ($0.int64(0), $0.optionalText(1), $0.optionalInt64(2)) }
            var taken: [BatchRow] = []
            for (id, holder, until) in due {
                let free = holder == nil || holder == owner || (until ?? 0) < now || (holder.flatMap(LeaseOwner.init)?.isGoneFromThisHost ?? false)
                guard free else { continue }
                try database.statement("UPDATE batches SET owner = ?, lease_expires_at = ? WHERE id = ?")
                    .execute([.text(owner), .integer(leaseUntil), .integer(id)])
                if let row = try batch(id) { taken.append(row) }
            }
            return taken
        }
    }

    /// When the next batch step falls due (a poll, a pull-back), or nil when no batch is open.
    public func nextBatchStep() throws -> Int64? {
        try database.statement("""
            SELECT min(min(coalesce(next_poll_at, 0),
                CASE WHEN state = 'created' AND cancel_requested_at IS NULL THEN pull_back_at ELSE 9223372036854775807 END))
            FROM batches WHERE state != 'done'
            """).firstRow { $0.optionalInt64(0) } ?? nil
    }

    /// Open batches with their expected ends, oldest first, for progress.
    public func openBatchProgress(job: Int64?, now: Int64, window: Int64) throws -> [OpenBatchProgress] {
        let history = try JobPlanning.batchCompletion(database)
        return try database.statement("""
            SELECT b.id, b.provider, b.model, b.submitted_at, count(m.request_id) FROM batches b JOIN batch_requests m ON m.batch_id = b.id
                JOIN requests r ON r.id = m.request_id
            WHERE b.state != 'done' AND (?1 IS NULL OR r.job_id = ?1) GROUP BY b.id ORDER BY b.id LIMIT 100
            """).rows([.optionalInt64(job)]) { row in
            let model = row.text(2), sent = row.optionalInt64(3)
            let typical = history.typicalDuration(model: model)
            return OpenBatchProgress(
                id: row.int64(0), provider: row.text(1), model: model, requests: row.int(4), submittedAt: sent,
                expectedEndAt: (sent ?? now) + (typical ?? window), fromHistory: typical != nil)
        }
    }

    /// Open batches and the requests they hold, for progress and `status`.
    public func openBatches() throws -> (batches: Int, requests: Int) {
        try database.statement("SELECT count(*), coalesce(sum(request_count), 0) FROM batches WHERE state != 'done'")
            .firstRow { ($0.int(0), $0.int(1)) } ?? (0, 0)
    }

    /// Provider batch ids already stored, so a batch found again after a crash is never adopted twice.
    public func knownProviderBatchIDs(provider: String) throws -> Set<String> {
        Set(try database.statement("SELECT provider_batch_id FROM batches WHERE provider = ? AND provider_batch_id IS NOT NULL")
            .rows([.text(provider)]) { $0.text(0) })
    }

    /// A provider batch looked at for `id` after a crash and found to be another database's: never taken for it.
    public func recordForeignCandidate(_ id: Int64, providerBatchID: String) throws {
        try database.writeTransaction {
            try requireLease(id)
            let known = try BatchStore.foreignCandidates(
                try database.scalarText("SELECT foreign_candidates FROM batches WHERE id = ?", [.integer(id)]), batch: id)
            let list = JSONValue.array((known + [providerBatchID]).map { .string($0) })
            try database.statement("UPDATE batches SET foreign_candidates = ? WHERE id = ? AND owner = ?")
                .execute([.text(JSONWriter.string(list)), .integer(id), .text(owner)])
        }
    }

    public func batchInputPage(_ batch: Int64, afterLine: Int64, limit: Int) throws -> [StoredBatchLine] {
        try database.statement("""
            SELECT m.line, m.provider_custom_id, r.shape, b.body FROM batch_requests m JOIN requests r ON r.id = m.request_id
                JOIN request_bodies b ON b.request_id = r.id
            WHERE m.batch_id = ? AND m.line > ? ORDER BY m.line LIMIT ?
            """).rows([.integer(batch), .integer(afterLine), .integer(Int64(limit))]) { row in
            StoredBatchLine(
                line: row.int64(0), providerCustomID: row.text(1), shape: RequestShape(rawValue: row.text(2)) ?? .openaiBatch, body: row.text(3))
        }
    }

    /// The calls a simulated batch stands for, by its provider batch id, each with its provider custom id.
    public func batchCalls(providerBatchID: String, catalog: PricingCatalog) throws -> [(customID: String, call: ProviderCall)] {
        guard let batch = try database.statement("SELECT id FROM batches WHERE provider_batch_id = ?").firstRow([.text(providerBatchID)], { $0.int64(0) }),
            let row = try self.batch(batch), let model = catalog.model(id: row.model), let provider = catalog.providers[row.provider]
        else { return [] }
        let batchProvider = BatchInput.batchProvider(provider)
        var calls: [(customID: String, call: ProviderCall)] = []
        try forEachMemberBody(batch, model: model, provider: batchProvider) { member, body in
            calls.append((member.providerCustomID, ProviderCall(
                requestID: member.requestID, customID: member.customID, model: model, provider: batchProvider, mode: .batch, body: body,
                timeoutSeconds: 0)))
        }
        return calls
    }

    /// Each member of a batch in line order, with its body as the batch sends it.
    private func forEachMemberBody(
        _ batch: Int64, model: Model, provider: Provider, _ each: ((requestID: Int64, customID: String, providerCustomID: String), JSONObject) throws -> Void
    ) throws {
        try database.statement("""
            SELECT r.id, r.custom_id, r.shape, b.body, m.provider_custom_id FROM batch_requests m JOIN requests r ON r.id = m.request_id
                JOIN request_bodies b ON b.request_id = r.id
            WHERE m.batch_id = ? ORDER BY m.line
            """).forEachRow([.integer(batch)]) { row in
            let shape = RequestShape(rawValue: row.text(2)) ?? .openaiBatch
            let body = try DialectTranslation.requestBody(
                stored: row.text(3), storedDialect: shape.bodyDialect, model: model, provider: provider, mode: .batch)
            try each((row.int64(0), row.text(1), row.text(4)), body)
        }
    }

    public func recordBatchUpload(_ id: Int64, fileID: String) throws {
        try database.writeTransaction {
            try requireLease(id)
            try database.statement("""
                UPDATE batches SET state = 'uploaded', input_file_id = ?, last_error = NULL, next_poll_at = NULL WHERE id = ? AND state = 'planned'
                """)
                .execute([.text(fileID), .integer(id)])
        }
    }

    /// Written before the upload, so that a run that dies during it looks for the file before uploading another.
    public func recordBatchUploadStarted(_ id: Int64, now: Int64) throws {
        try database.writeTransaction {
            try requireLease(id)
            try database.statement("UPDATE batches SET upload_started_at = ? WHERE id = ? AND upload_started_at IS NULL").execute([.integer(now), .integer(id)])
        }
    }

    /// Written before the create call, so that a run that dies during it looks for the batch before creating another.
    public func recordBatchCreateStarted(_ id: Int64, now: Int64) throws {
        try database.writeTransaction {
            try requireLease(id)
            try database.statement("UPDATE batches SET create_started_at = ? WHERE id = ?").execute([.integer(now), .integer(id)])
        }
    }

    public func recordBatchCreated(_ id: Int64, providerBatchID: String, now: Int64, nextPoll: Int64) throws {
        try database.writeTransaction {
            try requireLease(id)
            try database.statement("""
                UPDATE batches SET state = 'created', provider_batch_id = ?, submitted_at = ?, next_poll_at = ?, provider_status = 'submitted',
                    last_error = NULL
                WHERE id = ? AND state IN ('planned', 'uploaded')
                """).execute([.text(providerBatchID), .integer(now), .integer(nextPoll), .integer(id)])
        }
    }

    /// A poll's answer: still running (polled again at `nextPoll`), or ended with where its results are.
    public func recordBatchPoll(_ id: Int64, status: BatchStatus, now: Int64, nextPoll: Int64) throws {
        try database.writeTransaction {
            try requireLease(id)
            if status.phase == .ended {
                try database.statement("""
                    UPDATE batches SET state = 'ended', provider_status = ?, ended_at = ?, output_file_id = ?, error_file_id = ?, results_url = ?,
                        provider_errors = ?, next_poll_at = NULL
                    WHERE id = ? AND state = 'created'
                    """).execute([
                    .text(status.providerStatus), .integer(now), .optionalText(status.outputFileID), .optionalText(status.errorFileID),
                    .optionalText(status.resultsURL),
                    .optionalText(status.errors.isEmpty ? nil : JSONWriter.string(.array(status.errors.prefix(10_000).map { error in
                        .object(JSONObject([
                            "line": error.line.map { .number(String($0)) } ?? .null, "code": .string(error.code), "message": .string(error.message),
                        ]))
                    }))),
                    .integer(id),
                ])
            } else {
                try database.statement("UPDATE batches SET provider_status = ?, next_poll_at = ?, last_error = NULL WHERE id = ?")
                    .execute([.text(status.providerStatus), .integer(nextPoll), .integer(id)])
            }
        }
    }

    public func recordBatchCancelRequested(_ id: Int64, now: Int64) throws {
        try database.writeTransaction {
            try requireLease(id)
            try database.statement("UPDATE batches SET cancel_requested_at = ?, next_poll_at = ? WHERE id = ?")
                .execute([.integer(now), .integer(now), .integer(id)])
        }
    }

    /// A step that failed (the API refused or could not be reached): tried again at `retryAt`.
    public func recordBatchError(_ id: Int64, message: String, retryAt: Int64) throws {
        try database.writeTransaction {
            try requireLease(id)
            try database.statement("UPDATE batches SET last_error = ?, next_poll_at = ? WHERE id = ?")
                .execute([.text(message), .integer(retryAt), .integer(id)])
        }
    }

    /// Every batch step is written by the run that holds the batch's lease, inside the step's transaction: a run whose
    /// lease lapsed while its API call ran (and another run took the batch over) stores nothing of that step.
    private func requireLease(_ id: Int64) throws {
        let holder = try database.statement("SELECT owner FROM batches WHERE id = ?").firstRow([.integer(id)]) { $0.optionalText(0) }
        guard holder == .some(owner) else { throw BatchLeaseLost(batch: id, holder: holder ?? nil) }
    }

    /// Hands the batch back so another run may advance it at once (this one is stopping).
    public func releaseBatchLeases() throws {
        try database.writeTransaction {
            try database.statement("UPDATE batches SET owner = NULL, lease_expires_at = NULL WHERE owner = ?").execute([.text(owner)])
        }
    }

    public func extendBatchLeases(until: Int64) throws {
        try database.writeTransaction {
            try database.statement("UPDATE batches SET lease_expires_at = ? WHERE owner = ? AND state != 'done'").execute([.integer(until), .text(owner)])
        }
    }

    // MARK: - Results


    /// Stores one chunk of a batch's result lines in one transaction. Each line is joined to its request by its
    /// provider custom id; a line whose request is no longer in the batch (stored already, or taken back to be
    /// served live) stores nothing, so reading the results again after a crash stores nothing twice. A late
    /// answer for a request taken back stays counted as unsettled, at its real cost: the provider billed it.
    public func applyBatchResults(
        _ batch: BatchRow, lines: [(line: BatchResultLine, member: BatchMember?, decision: BatchDecision?)], now: Int64, catalog: PricingCatalog
    ) throws -> BatchResultCounts {
        try database.writeTransaction {
            try requireLease(batch.id)
            var counts = BatchResultCounts()
            // The chunk's charges and histories, written once at its end rather than once a line.
            var totals = AnswerTotals()
            let ledger = Ledger(database: database)
            let owner = batch.owner
            let model = catalog.model(id: batch.model)
            let leave = try database.statement("DELETE FROM batch_requests WHERE request_id = ? AND batch_id = ?")
            // In request order: results come back shuffled, and rows written in key order touch far fewer pages.
            for (line, member, decision) in lines.sorted(by: { ($0.member?.requestID ?? 0) < ($1.member?.requestID ?? 0) }) {
                // Leaving the batch is the check that the line was not stored already (a crash, results read again).
                var left = false
                if let member, decision != nil {
                    try leave.execute([.integer(member.requestID), .integer(batch.id)])
                    left = database.changes == 1
                }
                guard left, let member, let decision else {
                    let named = BatchInput.requestID(inCustomID: line.customID, database: databaseID, batch: batch.id)
                    if case .succeeded(let response) = line.outcome, let model, let requestID = named {
                        let cost = Charges.cost(of: response.usage, prices: Charges.prices(of: model, mode: .batch, at: now))
                        try database.statement("UPDATE unsettled_charges SET amount_pico = ? WHERE request_id = ? AND owner = ?")
                            .execute([.integer(cost.picoUSD), .integer(requestID), .text(owner)])
                        if database.changes > 0 { counts.late += 1 }
                    } else if let requestID = named {
                        try database.statement("DELETE FROM unsettled_charges WHERE request_id = ? AND owner = ?").execute([.integer(requestID), .text(owner)])
                    }
                    continue
                }
                let attempt = { (outcome: String, status: Int?, error: String?, usage: Usage?, simulated: Bool) in
                    AttemptRecord(
                        model: batch.model, provider: batch.provider, mode: .batch, startedAt: batch.submittedAt ?? batch.plannedAt,
                        latencyMilliseconds: now - (batch.submittedAt ?? batch.plannedAt), status: status, outcome: outcome, error: error, usage: usage,
                        simulated: simulated)
                }
                // A line the provider answered (a 2xx) was billed even when its usage cannot be read: what it may cost
                // stays counted, as an unsettled charge, rather than vanishing with the reservation.
                let billedUnread: Bool
                if case .succeed = decision { billedUnread = false } else { billedUnread = line.outcome.wasAnswered }
                let reservation = billedUnread ? nil : try dropReservation(member.requestID, owner: owner)
                if billedUnread { try ledger.unsettle(requests: [member.requestID], now: now) }
                switch decision {
                case .succeed(let response, let cost, let baseline, let cacheSaving):
                    guard try lifecycle.endLease(member.requestID, owner: owner, state: .succeeded, error: nil) else { continue }
                    var answer = PaidAnswer(
                        requestID: member.requestID, jobID: member.jobID, tier: member.needs.qualityTier,
                        maxOutputTokens: model?.outputAllowance(member.needs.maxOutputTokens) ?? member.needs.maxOutputTokens, model: batch.model,
                        provider: batch.provider, dialect: batch.dialect, mode: .batch, response: response, cost: cost, baseline: baseline,
                        attempt: attempt("succeeded", response.statusCode, nil, response.usage, response.simulated), finishedAt: now)
                    answer.cacheSaving = cacheSaving
                    try storeAnswer(answer, estimatedInputTokens: member.needs.inputTokens, reservation: reservation, worker: owner, into: &totals)
                    counts.succeeded += 1
                    counts.spend += cost
                case .replan(let reason), .replanLive(let reason):
                    let (outcome, status) = line.outcome.attemptWords
                    try insertAttempt(attempt(outcome, status, reason, nil, batch.simulated), request: member.requestID, worker: owner)
                    var live = false
                    if case .replanLive = decision { live = true }
                    try lifecycle.unplanFromBatch(member.requestID, owner: owner, reason: reason, liveOnly: live)
                    counts.replanned += 1
                case .move(let model, let mode, let cost, let reason):
                    let (outcome, status) = line.outcome.attemptWords
                    try insertAttempt(attempt(outcome, status, reason, nil, batch.simulated), request: member.requestID, worker: owner)
                    if try lifecycle.release(member.requestID, owner: owner, countAttempt: true, reason: reason, notBefore: nil) {
                        try movePlan(member.requestID, model: model, mode: mode, cost: cost, latestStart: now)
                    }
                    counts.moved += 1
                case .fail(let message):
                    let (outcome, status) = line.outcome.attemptWords
                    try insertAttempt(attempt(outcome, status, message, nil, batch.simulated), request: member.requestID, worker: owner)
                    if try lifecycle.endLease(member.requestID, owner: owner, state: .failed, error: message) { counts.failed += 1 }
                }
            }
            try totals.write(to: database)
            return counts
        }
    }

    /// The reasons a batch failed at the provider, by input line (1-based; 0 for the batch as a whole).
    public func batchErrors(_ id: Int64) throws -> [Int: String] {
        // Written by `recordBatchPoll` from the provider's answer: text that does not read back is an error.
        guard let text = try database.scalarText("SELECT provider_errors FROM batches WHERE id = ?", [.integer(id)]),
            let errors = try JSONParser.parse(text).arrayValue
        else { return [:] }
        var byLine: [Int: String] = [:]
        for error in errors.compactMap(\.objectValue) {
            let line = error["line"]?.intValue ?? 0
            let words = "\(error["code"]?.stringValue ?? "error"): \(error["message"]?.stringValue ?? "")"
            byLine[line] = byLine[line].map { $0 + "; " + words } ?? words
        }
        return byLine
    }


    /// Ends a batch whose results were all read: requests it still holds (no line came back for them, or the
    /// batch failed validation) are planned again with the reason. After a failed validation they go live
    /// (`liveOnly`), where each call gets an answer of its own, rather than into another batch the API may refuse
    /// the same way. Returns how many were planned again (and, of those given up on, how many failed).
    @discardableResult
    public func finishBatch(
        _ batch: BatchRow, reason: String, lineErrors: [Int: String], liveOnly: Bool = false, unanswered: UnansweredLines = .notBilled
    ) throws -> (replanned: Int, failed: Int) {
        try database.writeTransaction {
            try requireLease(batch.id)
            var failed = 0
            let left = try database.statement("""
                SELECT m.request_id, m.line, r.attempts FROM batch_requests m JOIN requests r ON r.id = m.request_id WHERE m.batch_id = ?
                """).rows([.integer(batch.id)]) { ($0.int64(0), $0.int(1), $0.int(2)) }
            for (request, line, attempts) in left {
                let why = lineErrors[line + 1].map { "\(reason): line \(line + 1): \($0)" } ?? reason
                switch unanswered {
                case .notBilled:
                    _ = try dropReservation(request, owner: batch.owner)
                case .mayBeBilled(let maximumAttempts, let now):
                    try Ledger(database: database).unsettle(requests: [request], now: now)
                    try insertAttempt(
                        AttemptRecord(
                            model: batch.model, provider: batch.provider, mode: .batch, startedAt: batch.submittedAt ?? batch.plannedAt,
                            latencyMilliseconds: now - (batch.submittedAt ?? batch.plannedAt), status: nil, outcome: "missing", error: why, usage: nil,
                            simulated: batch.simulated),
                        request: request, worker: batch.owner)
                    if attempts >= maximumAttempts {
                        if try lifecycle.endLease(request, owner: batch.owner, state: .failed, error: "gave up after \(attempts) attempts; last: \(why)") {
                            failed += 1
                        }
                        continue
                    }
                }
                try lifecycle.unplanFromBatch(request, owner: batch.owner, reason: why, liveOnly: liveOnly)
            }
            try database.statement("DELETE FROM batch_requests WHERE batch_id = ?").execute([.integer(batch.id)])
            try database.statement("UPDATE batches SET state = 'done', owner = NULL, lease_expires_at = NULL WHERE id = ?").execute([.integer(batch.id)])
            return (left.count - failed, failed)
        }
    }

    /// Takes every request out of a batch the provider has not ended in time, to be served live: they may still be
    /// answered (and billed) by the batch, so their reservations stay counted, as unsettled charges, until its
    /// results say. Returns how many.
    public func detachBatch(_ batch: BatchRow, now: Int64, reason: String) throws -> Int {
        try database.writeTransaction {
            try requireLease(batch.id)
            let members = try database.statement("SELECT request_id FROM batch_requests WHERE batch_id = ?").rows([.integer(batch.id)]) { $0.int64(0) }
            try Ledger(database: database).unsettle(requests: members, now: now)
            for request in members { try lifecycle.unplanFromBatch(request, owner: batch.owner, reason: reason, liveOnly: true) }
            try database.statement("DELETE FROM batch_requests WHERE batch_id = ?").execute([.integer(batch.id)])
            return members.count
        }
    }

    /// A batch that was never sent (its pull-back came first, or its input could not be written): its requests
    /// are planned again and it is closed.
    public func abandonBatch(_ batch: BatchRow, reason: String) throws -> Int {
        try finishBatch(batch, reason: reason, lineErrors: [:]).replanned
    }

    /// The requests a chunk of result lines names that are still in the batch, by provider custom id (one query).
    /// A line names a member only by the exact custom id stored for it in this batch: a line of another batch or
    /// another database's batch matches none.
    public func batchMembers(_ batch: Int64, providerCustomIDs: [String]) throws -> [String: BatchMember] {
        let ids = providerCustomIDs.compactMap { BatchInput.requestID(inCustomID: $0, database: databaseID, batch: batch) }
        var members: [String: BatchMember] = [:]
        try database.statement("""
            SELECT r.id, r.job_id, r.custom_id, r.quality_floor, r.quality_tier, r.input_tokens, r.max_output_tokens, r.capabilities,
                r.pinned_model, r.reference_model, r.deadline_at, r.max_cost_pico, r.attempts, m.provider_custom_id, r.provider_filter
            FROM batch_requests m JOIN requests r ON r.id = m.request_id
            WHERE m.request_id IN (SELECT value FROM json_each(?1)) AND m.batch_id = ?2
            """).forEachRow([.text(PlanStore.idList(ids)), .integer(batch)]) { row in
            members[row.text(13)] = try BatchStore.member(row)
        }
        return members
    }
}

enum BatchStore {
    /// The provider batches recorded as another database's, from their stored list; text that does not read as one
    /// is an error (forgetting them could take another database's batch for this one's).
    static func foreignCandidates(_ text: String?, batch: Int64) throws -> [String] {
        guard let text else { return [] }
        guard let list = (try? JSONParser.parse(text))?.arrayValue else {
            throw Problem("batch \(batch): its stored list of other databases' batches does not read as one; the database may be damaged")
        }
        return list.compactMap(\.stringValue)
    }

    static func member(_ row: Row) throws -> BatchMember {
            BatchMember(
                requestID: row.int64(0), jobID: row.int64(1), customID: row.text(2),
                needs: RequestNeeds(
                    qualityFloor: row.int(3), qualityTier: row.text(4), inputTokens: row.int(5), maxOutputTokens: row.int(6),
                    capabilities: Capabilities(rawValue: row.int(7)), pinnedModel: row.optionalText(8),
                    providers: try ProviderFilter.stored(row.optionalText(14))),
                referenceModel: row.optionalText(9), deadlineAt: row.int64(10), maxCost: row.optionalInt64(11).map { Money(picoUSD: $0) },
                attempts: row.int(12))
    }
}

extension DispatchStore {

    func batch(_ id: Int64) throws -> BatchRow? {
        try database.statement("""
            SELECT id, key, provider, model, dialect, simulated, state, request_count, planned_at, create_started_at, submitted_at, pull_back_at,
                next_poll_at, cancel_requested_at, input_file_id, provider_batch_id, provider_status, output_file_id, error_file_id, results_url,
                foreign_candidates, upload_started_at
            FROM batches WHERE id = ?
            """).firstRow([.integer(id)]) { row in
            BatchRow(
                id: row.int64(0), key: row.text(1), provider: row.text(2), model: row.text(3), dialect: Provider.Dialect(rawValue: row.text(4)) ?? .openai,
                simulated: row.int(5) == 1, state: BatchRow.State(rawValue: row.text(6)) ?? .done, requestCount: row.int(7), plannedAt: row.int64(8),
                createStartedAt: row.optionalInt64(9), submittedAt: row.optionalInt64(10), pullBackAt: row.int64(11), nextPollAt: row.optionalInt64(12),
                cancelRequestedAt: row.optionalInt64(13), inputFileID: row.optionalText(14), providerBatchID: row.optionalText(15),
                providerStatus: row.optionalText(16), outputFileID: row.optionalText(17), errorFileID: row.optionalText(18), resultsURL: row.optionalText(19),
                foreignCandidates: Set(try BatchStore.foreignCandidates(row.optionalText(20), batch: row.int64(0))),
                uploadStartedAt: row.optionalInt64(21))
        }
    }
}
