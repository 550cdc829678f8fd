import PurserCore
import SQLiteStore

/// The service's keys, files and batches. Every statement is prepared; nothing is built from input. A batch changes
/// status only by a conditional update (`WHERE status IN …`), so two serves on one database never both move it.
public struct ServiceStore {
    let database: Database

    public init(database: Database) { self.database = database }

    // MARK: - Keys

    private static let keyColumns = "id, project, name, role, prefix, created_at, revoked_at"

    private static func key(_ row: Row) -> ProjectKey {
        ProjectKey(
            id: row.int64(0), project: row.text(1), name: row.text(2), role: KeyRole(rawValue: row.text(3)) ?? .read, prefix: row.text(4),
            createdAt: row.int64(5), revokedAt: row.optionalInt64(6))
    }

    /// Stores a new key's hash (never the token) and returns the key.
    public func createKey(project: String, name: String, role: KeyRole, token: ProjectToken, at now: Int64) throws -> ProjectKey {
        try database.writeTransaction {
            try database.statement("INSERT INTO project_keys (project, name, role, prefix, token_sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)")
                .execute([.text(project), .text(name), .text(role.rawValue), .text(token.prefix), .text(token.sha256), .integer(now)])
            return ProjectKey(id: database.lastInsertRowID, project: project, name: name, role: role, prefix: token.prefix, createdAt: now, revokedAt: nil)
        }
    }

    public func keys() throws -> [ProjectKey] {
        try database.statement("SELECT \(ServiceStore.keyColumns) FROM project_keys ORDER BY id").rows([], ServiceStore.key)
    }

    /// Revokes the key with this number or prefix; nil when there is none. A revoked key stays listed.
    public func revokeKey(_ reference: String, at now: Int64) throws -> ProjectKey? {
        try database.writeTransaction {
            let found = if let id = Int64(reference) {
                try database.statement("SELECT \(ServiceStore.keyColumns) FROM project_keys WHERE id = ?").firstRow([.integer(id)], ServiceStore.key)
            } else {
                try database.statement("SELECT \(ServiceStore.keyColumns) FROM project_keys WHERE prefix = ?").firstRow([.text(reference)], ServiceStore.key)
            }
            guard var key = found else { return nil }
            if key.revokedAt == nil {
                try database.statement("UPDATE project_keys SET revoked_at = ? WHERE id = ?").execute([.integer(now), .integer(key.id)])
                key.revokedAt = now
            }
            return key
        }
    }

    /// The key with this number, unless revoked (a dashboard session checks its key on every request).
    public func liveKey(id: Int64) throws -> ProjectKey? {
        try database.statement("SELECT \(ServiceStore.keyColumns) FROM project_keys WHERE id = ? AND revoked_at IS NULL").firstRow([.integer(id)], ServiceStore.key)
    }

    /// The live key this token is, found by its prefix and matched on its hash in constant time.
    public func key(for token: ProjectToken) throws -> ProjectKey? {
        guard token.isWellFormed else { return nil }
        let hash = token.sha256
        var match: ProjectKey?
        try database.statement("SELECT \(ServiceStore.keyColumns), token_sha256 FROM project_keys WHERE prefix = ?").forEachRow([.text(token.prefix)]) { row in
            if SHA256.constantTimeEqual(row.text(7), hash), row.isNull(6) { match = ServiceStore.key(row) }
        }
        return match
    }

    // MARK: - Files

    private static let fileColumns = "id, project, filename, purpose, bytes, sha256, path, created_at, expires_at"

    private static func file(_ row: Row) -> ServiceFile {
        ServiceFile(
            id: row.text(0), project: row.text(1), filename: row.text(2), purpose: row.text(3), bytes: row.int64(4), sha256: row.text(5),
            path: row.text(6), createdAt: row.int64(7), expiresAt: row.optionalInt64(8))
    }

    public func insertFile(_ file: ServiceFile) throws {
        try database.writeTransaction { try insertFileRow(file) }
    }

    private func insertFileRow(_ file: ServiceFile) throws {
        try database.statement("INSERT INTO service_files (\(ServiceStore.fileColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)").execute([
            .text(file.id), .text(file.project), .text(file.filename), .text(file.purpose), .integer(file.bytes), .text(file.sha256),
            .text(file.path), .integer(file.createdAt), .optionalInt64(file.expiresAt),
        ])
    }

    /// The project's file with this id, unless deleted or expired.
    public func file(_ id: String, project: String, now: Int64) throws -> ServiceFile? {
        try database.statement("""
            SELECT \(ServiceStore.fileColumns) FROM service_files
            WHERE id = ? AND project = ? AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?)
            """).firstRow([.text(id), .text(project), .integer(now)], ServiceStore.file)
    }

    /// The project's live file with these bytes, purpose and name: what a retried upload gets back.
    public func file(sha256: String, purpose: String, filename: String, project: String, now: Int64) throws -> ServiceFile? {
        try database.statement("""
            SELECT \(ServiceStore.fileColumns) FROM service_files
            WHERE project = ? AND sha256 = ? AND purpose = ? AND filename = ? AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?)
            ORDER BY rowid LIMIT 1
            """).firstRow([.text(project), .text(sha256), .text(purpose), .text(filename), .integer(now)], ServiceStore.file)
    }

    /// One page of the project's live files, newest first unless `ascending`, after the file `after` when given:
    /// the page and whether more follow.
    public func files(project: String, purpose: String?, after: String?, limit: Int, ascending: Bool, now: Int64) throws -> (files: [ServiceFile], hasMore: Bool) {
        var boundary: Int64?
        if let after {
            boundary = try database.scalarInt("SELECT rowid FROM service_files WHERE id = ? AND project = ?", [.text(after), .text(project)])
            if boundary == nil { return ([], false) }
        }
        let order = ascending ? "ASC" : "DESC"
        let comparison = ascending ? ">" : "<"
        let rows = try database.statement("""
            SELECT \(ServiceStore.fileColumns) FROM service_files
            WHERE project = ?1 AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?2) AND (?3 IS NULL OR purpose = ?3)
              AND (?4 IS NULL OR rowid \(comparison) ?4)
            ORDER BY rowid \(order) LIMIT ?5
            """).rows([.text(project), .integer(now), .optionalText(purpose), .optionalInt64(boundary), .int(limit + 1)], ServiceStore.file)
        return (Array(rows.prefix(limit)), rows.count > limit)
    }

    /// Marks the project's file deleted; false when it has no such file. Its bytes are removed by the caller.
    public func deleteFile(_ id: String, project: String, at now: Int64) throws -> Bool {
        try database.writeTransaction {
            try database.statement("UPDATE service_files SET deleted_at = ? WHERE id = ? AND project = ? AND deleted_at IS NULL")
                .execute([.integer(now), .text(id), .text(project)])
            return database.changes > 0
        }
    }

    // MARK: - Batches

    private static let batchColumns = """
        seq, id, project, dialect, status, job_id, input_file_id, endpoint, completion_window, metadata, errors, output_file_id, error_file_id,
        created_at, in_progress_at, finalizing_at, ended_at, cancelling_at
        """

    private static func batch(_ row: Row) -> ServiceBatch {
        ServiceBatch(
            seq: row.int64(0), id: row.text(1), project: row.text(2), dialect: BatchDialect(rawValue: row.text(3)) ?? .openai,
            status: ServiceBatchStatus(rawValue: row.text(4)) ?? .failed, jobID: row.optionalInt64(5), inputFileID: row.optionalText(6),
            endpoint: row.text(7), completionWindow: row.text(8), metadata: row.optionalText(9), errors: row.optionalText(10),
            outputFileID: row.optionalText(11), errorFileID: row.optionalText(12), createdAt: row.int64(13), inProgressAt: row.optionalInt64(14),
            finalizingAt: row.optionalInt64(15), endedAt: row.optionalInt64(16), cancellingAt: row.optionalInt64(17))
    }

    /// Stores a new batch, unless the project made one with the same create key since `since`: then that one is
    /// returned and nothing is stored (a retried create).
    public func batch(createKey: String, project: String, since: Int64) throws -> ServiceBatch? {
        try database.statement("""
            SELECT \(ServiceStore.batchColumns) FROM service_batches
            WHERE project = ? AND create_key = ? AND created_at >= ? AND deleted_at IS NULL ORDER BY seq DESC LIMIT 1
            """).firstRow([.text(project), .text(createKey), .integer(since)], ServiceStore.batch)
    }

    /// Stores a new batch, unless the project made one with the same create key since `since` (see above).
    /// A batch stored `claimedBy` a keeper name is that keeper's for two minutes (a create that checks its own input).
    public func insertBatch(_ batch: ServiceBatch, createKey: String, since: Int64, claimedBy keeper: String? = nil) throws -> (batch: ServiceBatch, created: Bool) {
        try database.writeTransaction {
            if let existing = try self.batch(createKey: createKey, project: batch.project, since: since) { return (existing, false) }
            var stored = batch
            try database.statement("""
                INSERT INTO service_batches (id, project, dialect, status, job_id, input_file_id, endpoint, completion_window, metadata, create_key,
                    created_at, in_progress_at, keeper, keeper_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute([
                    .text(stored.id), .text(stored.project), .text(stored.dialect.rawValue), .text(stored.status.rawValue), .optionalInt64(stored.jobID),
                    .optionalText(stored.inputFileID), .text(stored.endpoint), .text(stored.completionWindow), .optionalText(stored.metadata),
                    .text(createKey), .integer(stored.createdAt), .optionalInt64(stored.inProgressAt),
                    .optionalText(keeper), keeper.map { _ in .integer(stored.createdAt + 120_000) } ?? .null,
                ])
            stored.seq = database.lastInsertRowID
            return (stored, true)
        }
    }

    public func batch(_ id: String, project: String) throws -> ServiceBatch? {
        try database.statement("SELECT \(ServiceStore.batchColumns) FROM service_batches WHERE id = ? AND project = ? AND deleted_at IS NULL")
            .firstRow([.text(id), .text(project)], ServiceStore.batch)
    }

    /// One page of the project's batches of one dialect, newest first: those older than `after`, or newer than
    /// `before` (then still listed newest first); the page and whether more follow in that direction.
    public func batches(project: String, dialect: BatchDialect, after: String?, before: String?, limit: Int) throws -> (batches: [ServiceBatch], hasMore: Bool) {
        func seq(_ id: String?) throws -> Int64?? {
            guard let id else { return .some(nil) }
            guard let found = try database.scalarInt("SELECT seq FROM service_batches WHERE id = ? AND project = ?", [.text(id), .text(project)]) else { return nil }
            return .some(found)
        }
        guard let older = try seq(after), let newer = try seq(before) else { return ([], false) }
        let rows: [ServiceBatch]
        if let newer {
            rows = try database.statement("""
                SELECT \(ServiceStore.batchColumns) FROM service_batches
                WHERE project = ? AND dialect = ? AND deleted_at IS NULL AND seq > ? ORDER BY seq ASC LIMIT ?
                """).rows([.text(project), .text(dialect.rawValue), .integer(newer), .int(limit + 1)], ServiceStore.batch)
            return (Array(rows.prefix(limit).reversed()), rows.count > limit)
        }
        rows = try database.statement("""
            SELECT \(ServiceStore.batchColumns) FROM service_batches
            WHERE project = ? AND dialect = ? AND deleted_at IS NULL AND (?3 IS NULL OR seq < ?3) ORDER BY seq DESC LIMIT ?4
            """).rows([.text(project), .text(dialect.rawValue), .optionalInt64(older), .int(limit + 1)], ServiceStore.batch)
        return (Array(rows.prefix(limit)), rows.count > limit)
    }

    /// Every project's batches in these statuses, oldest first: the keeper's work.
    public func batches(in statuses: [ServiceBatchStatus]) throws -> [ServiceBatch] {
        var found: [ServiceBatch] = []
        for status in statuses {
            found += try database.statement("SELECT \(ServiceStore.batchColumns) FROM service_batches WHERE status = ? AND deleted_at IS NULL ORDER BY seq")
                .rows([.text(status.rawValue)], ServiceStore.batch)
        }
        return found.sorted { $0.seq < $1.seq }
    }

    /// Requests by stored state over every job, for the metrics.
    public func requestStates() throws -> [(state: String, count: Int)] {
        try database.statement("SELECT state, count(*) FROM requests GROUP BY 1 ORDER BY 1").rows([]) { ($0.text(0), $0.int(1)) }
    }

    /// Per project, this month's charges and the money reserved for calls in flight, in each ledger, for the metrics.
    public func moneyByProject(month: BudgetMonth) throws -> [(project: String, simulated: Bool, charged: Money, reserved: Money)] {
        try database.statement("""
            SELECT project, simulated, sum(charged), sum(reserved) FROM (
                SELECT project, simulated, charged_pico AS charged, 0 AS reserved FROM monthly_charges WHERE month = ?1
                UNION ALL SELECT project, simulated, 0, amount_pico FROM reservations WHERE month = ?1)
            GROUP BY 1, 2 ORDER BY 1, 2
            """).rows([.text(month.description)]) { ($0.text(0), $0.int(1) != 0, Money(picoUSD: $0.int64(2)), Money(picoUSD: $0.int64(3))) }
    }

    /// The project's latest failed requests with their reasons, newest first, for the dashboard.
    public func recentFailures(project: String, limit: Int) throws -> [(job: Int64, customID: String, state: String, error: String)] {
        try database.statement("""
            SELECT r.job_id, r.custom_id, r.state, coalesce(r.last_error, r.state) FROM requests r JOIN jobs j ON j.id = r.job_id
            WHERE j.project = ? AND r.state IN ('failed', 'expired') ORDER BY r.id DESC LIMIT ?
            """).rows([.text(project), .int(limit)]) { ($0.int64(0), $0.text(1), $0.text(2), $0.text(3)) }
    }

    /// A project's jobs, newest first, for the dashboard.
    public func jobs(project: String, limit: Int) throws -> [Int64] {
        try database.statement("SELECT id FROM jobs WHERE project = ? ORDER BY id DESC LIMIT ?").rows([.text(project), .int(limit)]) { $0.int64(0) }
    }

    /// Batches by status, for the metrics.
    public func batchCounts() throws -> [(dialect: String, status: String, count: Int)] {
        try database.statement("SELECT dialect, status, count(*) FROM service_batches WHERE deleted_at IS NULL GROUP BY 1, 2 ORDER BY 1, 2")
            .rows([]) { ($0.text(0), $0.text(1), $0.int(2)) }
    }

    /// Claims the batch for `keeper` for `milliseconds`, unless another keeper's claim still holds; true when it is `keeper`'s.
    public func claimBatch(_ id: String, keeper: String, for milliseconds: Int64, now: Int64) throws -> Bool {
        try update("""
            UPDATE service_batches SET keeper = ?1, keeper_until = ?2
            WHERE id = ?3 AND (keeper IS NULL OR keeper = ?1 OR keeper_until < ?4)
            """, [.text(keeper), .integer(now + milliseconds), .text(id), .integer(now)])
    }

    /// A validated batch's job, and its move to in_progress; false when it was no longer validating.
    public func startBatch(_ id: String, job: Int64, at now: Int64) throws -> Bool {
        try update("UPDATE service_batches SET status = 'in_progress', job_id = ?, in_progress_at = ?, keeper = NULL, keeper_until = NULL WHERE id = ? AND status = 'validating'",
            [.integer(job), .integer(now), .text(id)])
    }

    /// A batch whose input was refused: failed with these errors (OpenAI's `errors.data`, as JSON text).
    public func failBatch(_ id: String, errors: String, at now: Int64) throws -> Bool {
        try update("UPDATE service_batches SET status = 'failed', errors = ?, ended_at = ? WHERE id = ? AND status = 'validating'",
            [.text(errors), .integer(now), .text(id)])
    }

    /// Every request of the batch's job has ended: finalizing, while its output is written.
    public func finalizeBatch(_ id: String, at now: Int64) throws -> Bool {
        try update("UPDATE service_batches SET status = 'finalizing', finalizing_at = ? WHERE id = ? AND status = 'in_progress'",
            [.integer(now), .text(id)])
    }

    /// A cancel asked for: cancelling, from validating, in_progress or finalizing; false from any other status.
    public func cancelBatch(_ id: String, at now: Int64) throws -> Bool {
        try update("""
            UPDATE service_batches SET status = 'cancelling', cancelling_at = ? WHERE id = ? AND status IN ('validating', 'in_progress', 'finalizing')
            """, [.integer(now), .text(id)])
    }

    /// The batch's output written: ended as `status`, with its files (stored in the same transaction).
    public func endBatch(_ id: String, as status: ServiceBatchStatus, files: [ServiceFile], output: String?, error: String?, at now: Int64) throws -> Bool {
        try database.writeTransaction {
            try database.statement("""
                UPDATE service_batches SET status = ?, output_file_id = ?, error_file_id = ?, ended_at = ?
                WHERE id = ? AND status IN ('finalizing', 'cancelling', 'validating')
                """).execute([.text(status.rawValue), .optionalText(output), .optionalText(error), .integer(now), .text(id)])
            guard database.changes > 0 else { return false }
            for file in files { try insertFileRow(file) }
            return true
        }
    }

    /// Removes a batch whose create was refused after it was stored (its requests did not pass the check).
    public func discardBatch(_ id: String, at now: Int64) throws {
        _ = try update("UPDATE service_batches SET status = 'failed', ended_at = ?1, deleted_at = ?1 WHERE id = ?2 AND status = 'validating'",
            [.integer(now), .text(id)])
    }

    /// Removes an ended batch from the listings (Anthropic's delete); false when it has not ended or is not there.
    public func deleteBatch(_ id: String, project: String, at now: Int64) throws -> Bool {
        try update("""
            UPDATE service_batches SET deleted_at = ? WHERE id = ? AND project = ? AND deleted_at IS NULL
              AND status IN ('failed', 'completed', 'expired', 'cancelled')
            """, [.integer(now), .text(id), .text(project)])
    }

    private func update(_ sql: String, _ values: [SQLiteValue]) throws -> Bool {
        try database.writeTransaction {
            try database.statement(sql).execute(values)
            return database.changes > 0
        }
    }
}

extension StoreFile {
    public var service: ServiceStore { ServiceStore(database: database) }
}
