import Foundation
import PurserCore
import SQLiteStore

/// Purser's tables. Money is stored in pico-USD and times in epoch milliseconds, all as integers.
public enum Schema {
    public static let migrator = Migrator([
        Migration(version: 1, sql: """
            CREATE TABLE jobs (
                id INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                project TEXT NOT NULL,
                source TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                submitted_at INTEGER NOT NULL,
                max_cost_pico INTEGER,
                request_count INTEGER NOT NULL DEFAULT 0,
                rejected_count INTEGER NOT NULL DEFAULT 0
            );
            CREATE INDEX jobs_by_fingerprint ON jobs(fingerprint);

            CREATE TABLE requests (
                id INTEGER PRIMARY KEY,
                job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                line_number INTEGER NOT NULL,
                custom_id TEXT NOT NULL,
                -- 'planned' is not stored: a queued request with a row in request_plans is planned.
                state TEXT NOT NULL CHECK (state IN
                    ('queued', 'held', 'waiting', 'running', 'succeeded', 'failed', 'cancelled', 'expired')),
                shape TEXT NOT NULL,
                reference_model TEXT,
                quality_floor INTEGER NOT NULL,
                quality_tier TEXT NOT NULL,
                deadline_at INTEGER NOT NULL,
                max_cost_pico INTEGER,
                pinned_model TEXT,
                capabilities INTEGER NOT NULL,
                input_tokens INTEGER NOT NULL,
                max_output_tokens INTEGER NOT NULL,
                tags TEXT,
                UNIQUE (job_id, custom_id)
            );

            -- The planner's choice for each queued request it could place, written in request order.
            CREATE TABLE request_plans (
                request_id INTEGER PRIMARY KEY REFERENCES requests(id) ON DELETE CASCADE,
                model TEXT NOT NULL,
                mode TEXT NOT NULL CHECK (mode IN ('sync', 'flex', 'offpeak', 'batch')),
                start_at INTEGER NOT NULL,
                cost_pico INTEGER NOT NULL,
                baseline_pico INTEGER NOT NULL
            );

            -- Bodies live apart so that planning scans small rows.
            CREATE TABLE request_bodies (
                request_id INTEGER PRIMARY KEY REFERENCES requests(id) ON DELETE CASCADE,
                body TEXT NOT NULL
            );

            CREATE TABLE rejected_lines (
                id INTEGER PRIMARY KEY,
                job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                line_number INTEGER NOT NULL,
                custom_id TEXT,
                reason TEXT NOT NULL
            );
            CREATE INDEX rejected_lines_by_job ON rejected_lines(job_id);

            -- Output lengths seen in results, per model and tier, to sharpen estimates.
            CREATE TABLE output_history (
                model_id TEXT NOT NULL,
                quality_tier TEXT NOT NULL,
                samples INTEGER NOT NULL,
                output_tokens INTEGER NOT NULL,
                max_output_tokens INTEGER NOT NULL,
                PRIMARY KEY (model_id, quality_tier)
            );
            """),
        Migration(version: 2, sql: """
            -- Dispatch: attempts count at claim; a running request holds a lease until it expires.
            ALTER TABLE requests ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE requests ADD COLUMN lease_owner TEXT;
            ALTER TABLE requests ADD COLUMN lease_expires_at INTEGER;
            ALTER TABLE requests ADD COLUMN next_attempt_at INTEGER;
            ALTER TABLE requests ADD COLUMN last_error TEXT;
            -- Only dispatchable requests are in this index, so claims never scan finished ones.
            CREATE INDEX requests_dispatchable ON requests(id) WHERE state IN ('queued', 'waiting');
            CREATE INDEX requests_running ON requests(lease_expires_at) WHERE state = 'running';

            -- Every call made, successful or not.
            CREATE TABLE attempts (
                id INTEGER PRIMARY KEY,
                request_id INTEGER NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
                worker TEXT NOT NULL,
                model TEXT NOT NULL,
                provider TEXT NOT NULL,
                mode TEXT NOT NULL,
                started_at INTEGER NOT NULL,
                latency_ms INTEGER NOT NULL,
                status INTEGER,
                outcome TEXT NOT NULL,
                error TEXT,
                input_tokens INTEGER,
                cached_input_tokens INTEGER,
                output_tokens INTEGER,
                simulated INTEGER NOT NULL
            );
            CREATE INDEX attempts_by_request ON attempts(request_id);

            -- At most one result per request (the primary key), written with its cost in one transaction.
            CREATE TABLE results (
                request_id INTEGER PRIMARY KEY REFERENCES requests(id) ON DELETE CASCADE,
                model TEXT NOT NULL,
                provider TEXT NOT NULL,
                dialect TEXT NOT NULL,
                mode TEXT NOT NULL,
                status_code INTEGER NOT NULL,
                provider_request_id TEXT,
                body TEXT NOT NULL,
                input_tokens INTEGER NOT NULL,
                cached_input_tokens INTEGER NOT NULL,
                cache_write_tokens INTEGER NOT NULL,
                output_tokens INTEGER NOT NULL,
                cost_pico INTEGER NOT NULL,
                simulated INTEGER NOT NULL,
                finished_at INTEGER NOT NULL
            );
            """),
        Migration(version: 3, sql: """
            -- Budgets: a cap per project for one calendar month (UTC), or with month '*' for every month that has none of its own.
            CREATE TABLE budgets (
                project TEXT NOT NULL,
                month TEXT NOT NULL,
                cap_pico INTEGER NOT NULL CHECK (cap_pico >= 0),
                warn_percent INTEGER NOT NULL CHECK (warn_percent BETWEEN 1 AND 100),
                set_at INTEGER NOT NULL,
                PRIMARY KEY (project, month)
            );
            ALTER TABLE jobs ADD COLUMN warn_percent INTEGER NOT NULL DEFAULT 80;

            -- Money held for a call before it is made: its worst case, counted against every cap it falls under
            -- (its project's month, its job), in the real or the simulated ledger. One per running request; the
            -- transaction that ends the lease deletes it.
            CREATE TABLE reservations (
                request_id INTEGER PRIMARY KEY REFERENCES requests(id) ON DELETE CASCADE,
                owner TEXT NOT NULL,
                job_id INTEGER NOT NULL,
                project TEXT NOT NULL,
                month TEXT NOT NULL,
                simulated INTEGER NOT NULL,
                amount_pico INTEGER NOT NULL,
                reserved_at INTEGER NOT NULL
            );
            -- No secondary indexes: the table holds only the calls in flight, so summing it is a short scan, and every
            -- index would cost a write per call.

            -- A result is billed when its money was reserved (so a call that straddles midnight at the end of a month
            -- is charged to the month whose cap admitted it), and carries what its reference model would have cost.
            ALTER TABLE results ADD COLUMN billed_at INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE results ADD COLUMN baseline_pico INTEGER NOT NULL DEFAULT 0;
            UPDATE results SET billed_at = finished_at,
                baseline_pico = coalesce((SELECT baseline_pico FROM request_plans WHERE request_id = results.request_id), cost_pico);
            CREATE INDEX results_by_billed_at ON results(billed_at);

            -- Running totals of charges, kept in the transaction that writes each result, so a cap check reads a row
            -- instead of summing results.
            CREATE TABLE monthly_charges (
                project TEXT NOT NULL,
                month TEXT NOT NULL,
                simulated INTEGER NOT NULL,
                charged_pico INTEGER NOT NULL,
                PRIMARY KEY (project, month, simulated)
            ) WITHOUT ROWID;
            CREATE TABLE job_charges (
                job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                simulated INTEGER NOT NULL,
                charged_pico INTEGER NOT NULL,
                PRIMARY KEY (job_id, simulated)
            ) WITHOUT ROWID;
            INSERT INTO monthly_charges (project, month, simulated, charged_pico)
                SELECT j.project, strftime('%Y-%m', s.billed_at / 1000, 'unixepoch'), s.simulated, sum(s.cost_pico)
                FROM results s JOIN requests r ON r.id = s.request_id JOIN jobs j ON j.id = r.job_id GROUP BY 1, 2, 3;
            INSERT INTO job_charges (job_id, simulated, charged_pico)
                SELECT r.job_id, s.simulated, sum(s.cost_pico) FROM results s JOIN requests r ON r.id = s.request_id GROUP BY 1, 2;

            -- Held requests wait for a cap to be raised, or (next_attempt_at) for the month whose cap held them to end.
            CREATE INDEX requests_held ON requests(next_attempt_at) WHERE state = 'held';
            """),
        Migration(version: 4, sql: """
            -- The state check is spelled with OR: SQLite 3.40 builds a table for a constant IN list each time a row is
            -- written, which cost two microseconds per insert and per state change. SQLite cannot change a check in
            -- place, so the table is rebuilt.
            CREATE TABLE requests_new (
                id INTEGER PRIMARY KEY,
                job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
                line_number INTEGER NOT NULL,
                custom_id TEXT NOT NULL,
                -- 'planned' is not stored: a queued request with a plan is planned.
                state TEXT NOT NULL CHECK (state = 'queued' OR state = 'held' OR state = 'waiting' OR state = 'running'
                    OR state = 'succeeded' OR state = 'failed' OR state = 'cancelled' OR state = 'expired'),
                shape TEXT NOT NULL,
                reference_model TEXT,
                quality_floor INTEGER NOT NULL,
                quality_tier TEXT NOT NULL,
                deadline_at INTEGER NOT NULL,
                max_cost_pico INTEGER,
                pinned_model TEXT,
                capabilities INTEGER NOT NULL,
                input_tokens INTEGER NOT NULL,
                max_output_tokens INTEGER NOT NULL,
                tags TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                lease_owner TEXT,
                lease_expires_at INTEGER,
                next_attempt_at INTEGER,
                last_error TEXT,
                UNIQUE (job_id, custom_id)
            );
            INSERT INTO requests_new (id, job_id, line_number, custom_id, state, shape, reference_model, quality_floor, quality_tier,
                deadline_at, max_cost_pico, pinned_model, capabilities, input_tokens, max_output_tokens, tags, attempts, lease_owner,
                lease_expires_at, next_attempt_at, last_error)
            SELECT id, job_id, line_number, custom_id, state, shape, reference_model, quality_floor, quality_tier,
                deadline_at, max_cost_pico, pinned_model, capabilities, input_tokens, max_output_tokens, tags, attempts, lease_owner,
                lease_expires_at, next_attempt_at, last_error FROM requests;
            DROP TABLE requests;
            ALTER TABLE requests_new RENAME TO requests;

            -- Plans made by an earlier purser are dropped; the next run plans those requests again, under both limits.
            DROP TABLE request_plans;
            UPDATE requests SET state = 'queued', next_attempt_at = NULL WHERE state = 'waiting';

            -- What a plan puts requests on: a model, a mode, and the latest moment a call may start and still finish by its
            -- deadline. Requests share lines, so a plan row holds only integers.
            CREATE TABLE plan_lines (
                id INTEGER PRIMARY KEY,
                model TEXT NOT NULL,
                mode TEXT NOT NULL CHECK (mode = 'sync' OR mode = 'flex' OR mode = 'offpeak' OR mode = 'batch'),
                latest_start INTEGER NOT NULL,
                UNIQUE (model, mode, latest_start)
            );
            -- A request's plan is also its place in the dispatch queue, so planning a million requests writes a million
            -- narrow rows and touches no request: queue 1 is ready to be claimed (in deadline order), 2 is waiting (a
            -- retry's backoff or a discount window, until requests.next_attempt_at), 0 is out of the queue (running, held,
            -- finished). A queued request with a plan is what status shows as planned. The job and the request's tokens are
            -- copied here so that re-planning a job and adding up what plans hold read this table alone.
            CREATE TABLE request_plans (
                request_id INTEGER PRIMARY KEY REFERENCES requests(id) ON DELETE CASCADE,
                job_id INTEGER NOT NULL,
                line INTEGER NOT NULL REFERENCES plan_lines(id),
                cost_pico INTEGER NOT NULL,
                baseline_pico INTEGER NOT NULL,
                deadline_at INTEGER NOT NULL,
                tokens INTEGER NOT NULL,
                queue INTEGER NOT NULL CHECK (queue BETWEEN 0 AND 2)
            );
            CREATE INDEX request_plans_ready ON request_plans(deadline_at, request_id) WHERE queue = 1;

            CREATE INDEX requests_running ON requests(lease_expires_at) WHERE state = 'running';
            CREATE INDEX requests_held ON requests(next_attempt_at) WHERE state = 'held';
            CREATE INDEX requests_waiting ON requests(next_attempt_at) WHERE state = 'waiting';
            CREATE INDEX requests_queued ON requests(job_id) WHERE state = 'queued';

            -- Jobs with requests to plan: set at submit and whenever requests come back without a plan (a released hold,
            -- purser retry), cleared when they are planned, so a run finds work to plan without scanning requests.
            ALTER TABLE jobs ADD COLUMN needs_plan INTEGER NOT NULL DEFAULT 1;
            UPDATE jobs SET needs_plan = EXISTS (SELECT 1 FROM requests WHERE requests.job_id = jobs.id AND requests.state = 'queued');
            """, rebuildsTables: true),
        Migration(version: 5, sql: """
            -- A call that may have been billed is never forgotten: when its worker died mid-call (its lease lapsed) or a run
            -- stopped it after the grace period, its reservation becomes an unsettled charge, still counted against its caps
            -- at the worst case, until an answer for it is recovered.
            CREATE TABLE unsettled_charges (
                id INTEGER PRIMARY KEY,
                request_id INTEGER NOT NULL,
                job_id INTEGER NOT NULL,
                project TEXT NOT NULL,
                month TEXT NOT NULL,
                simulated INTEGER NOT NULL,
                amount_pico INTEGER NOT NULL,
                reserved_at INTEGER NOT NULL,
                lapsed_at INTEGER NOT NULL,
                owner TEXT NOT NULL
            );
            CREATE INDEX unsettled_charges_by_month ON unsettled_charges(project, month, simulated);
            CREATE INDEX unsettled_charges_by_job ON unsettled_charges(job_id, simulated);
            """),
        Migration(version: 6, sql: """
            -- One row per batch sent through a provider's batch API: a durable state machine, advanced one step per
            -- transaction, with every provider id written the moment it is known.
            --   planned ──upload──▶ uploaded ──create──▶ created ──poll──▶ ended ──store results──▶ done
            -- (an anthropic batch has no upload: planned ──create──▶ created). `key` goes to the provider as the batch's
            -- metadata (and the uploaded file's name), so a batch created just before a crash is found again by it.
            -- `owner`/`lease_expires_at` let one run at a time advance a batch; a run whose process is gone is
            -- taken over at once. `cancel_requested_at` is set when the batch is cancelled to serve its requests live.
            CREATE TABLE batches (
                id INTEGER PRIMARY KEY,
                key TEXT NOT NULL UNIQUE,
                provider TEXT NOT NULL,
                model TEXT NOT NULL,
                dialect TEXT NOT NULL,
                simulated INTEGER NOT NULL,
                state TEXT NOT NULL CHECK (state = 'planned' OR state = 'uploaded' OR state = 'created' OR state = 'ended' OR state = 'done'),
                request_count INTEGER NOT NULL,
                input_bytes INTEGER NOT NULL DEFAULT 0,
                planned_at INTEGER NOT NULL,
                create_started_at INTEGER,
                submitted_at INTEGER,
                ended_at INTEGER,
                pull_back_at INTEGER NOT NULL,
                next_poll_at INTEGER,
                cancel_requested_at INTEGER,
                input_file_id TEXT,
                provider_batch_id TEXT,
                provider_status TEXT,
                output_file_id TEXT,
                error_file_id TEXT,
                results_url TEXT,
                -- A failed batch's reasons, as the provider gave them: [{"line": 3, "code": …, "message": …}].
                provider_errors TEXT,
                owner TEXT,
                lease_expires_at INTEGER,
                last_error TEXT
            );
            CREATE INDEX batches_open ON batches(id) WHERE state != 'done';

            -- The requests a batch holds now: each is `running` under the lease owner 'batch:ID' while it is here,
            -- with its worst case reserved under that owner. A row goes when its result is stored or the request
            -- leaves the batch, in the same transaction, so no result is stored twice.
            CREATE TABLE batch_requests (
                request_id INTEGER PRIMARY KEY REFERENCES requests(id) ON DELETE CASCADE,
                batch_id INTEGER NOT NULL REFERENCES batches(id),
                line INTEGER NOT NULL,
                provider_custom_id TEXT NOT NULL
            );
            CREATE INDEX batch_requests_by_batch ON batch_requests(batch_id, line);

            -- Set when a batch expired on a request or it was taken back from one to meet its deadline: it is then
            -- planned for live calls only.
            ALTER TABLE requests ADD COLUMN live_only INTEGER NOT NULL DEFAULT 0;
            """),
        Migration(version: 7, sql: """
            -- A random id made when the database is first used (or upgraded). It goes into every batch's provider custom
            -- ids and metadata, so that two databases on one provider key never take each other's batches for their own.
            CREATE TABLE database_identity (
                id TEXT NOT NULL CHECK (length(id) = 16)
            );
            INSERT INTO database_identity (id) VALUES (lower(hex(randomblob(8))));
            -- Provider batches looked at after a crash inside a create and found to be another database's: never again
            -- taken for this batch. `upload_started_at` is set before an input upload is sent, so that a run looks for a
            -- file an earlier run may have left at the provider only when one may exist.
            ALTER TABLE batches ADD COLUMN foreign_candidates TEXT;
            ALTER TABLE batches ADD COLUMN upload_started_at INTEGER;
            """),
        Migration(version: 8, sql: """
            -- The providers a request may go to, when its line or its submit restricted them: {"only": [...], "ignore": [...]}.
            ALTER TABLE requests ADD COLUMN provider_filter TEXT;
            """),
        Migration(version: 9, sql: """
            -- Input tokens as Purser estimated them against what each provider reported, per ledger: kept as results are
            -- stored, so plans read one row per provider rather than every result (`InputCalibration`).
            CREATE TABLE input_history (
                provider TEXT NOT NULL,
                simulated INTEGER NOT NULL,
                results INTEGER NOT NULL,
                estimated_tokens INTEGER NOT NULL,
                reported_tokens INTEGER NOT NULL,
                PRIMARY KEY (provider, simulated)
            );
            INSERT INTO input_history (provider, simulated, results, estimated_tokens, reported_tokens)
                SELECT s.provider, s.simulated, count(*), sum(r.input_tokens), sum(s.input_tokens + s.cached_input_tokens + s.cache_write_tokens)
                FROM results s JOIN requests r ON r.id = s.request_id GROUP BY 1, 2;
            """),
        Migration(version: 10, sql: """
            -- purser serve. Project keys: only the SHA-256 of each token is kept, beside the token's first characters
            -- (which name it in `keys list` and find its row) — never the token itself.
            CREATE TABLE project_keys (
                id INTEGER PRIMARY KEY,
                project TEXT NOT NULL,
                name TEXT NOT NULL,
                role TEXT NOT NULL CHECK (role IN ('submit', 'read', 'admin')),
                prefix TEXT NOT NULL,
                token_sha256 TEXT NOT NULL UNIQUE,
                created_at INTEGER NOT NULL,
                revoked_at INTEGER
            );
            CREATE INDEX project_keys_by_prefix ON project_keys(prefix);
            -- Files uploaded through the OpenAI Files API, and the output and error files of finished batches. The
            -- bytes live in the work folder beside the database (`path`); `sha256` makes a retried upload the same file.
            CREATE TABLE service_files (
                id TEXT PRIMARY KEY,
                project TEXT NOT NULL,
                filename TEXT NOT NULL,
                purpose TEXT NOT NULL,
                bytes INTEGER NOT NULL,
                sha256 TEXT NOT NULL,
                path TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                expires_at INTEGER,
                deleted_at INTEGER
            );
            CREATE INDEX service_files_by_content ON service_files(project, sha256);
            -- Batches created through either API. Each becomes a Purser job once its input is checked; `create_key`
            -- (a hash of the project, the input and the parameters) makes a create retried within minutes the same batch.
            CREATE TABLE service_batches (
                seq INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                project TEXT NOT NULL,
                dialect TEXT NOT NULL CHECK (dialect IN ('openai', 'anthropic')),
                status TEXT NOT NULL CHECK (status IN
                    ('validating', 'failed', 'in_progress', 'finalizing', 'completed', 'expired', 'cancelling', 'cancelled')),
                job_id INTEGER REFERENCES jobs(id),
                input_file_id TEXT,
                endpoint TEXT NOT NULL,
                completion_window TEXT NOT NULL,
                metadata TEXT,
                create_key TEXT NOT NULL,
                errors TEXT,
                output_file_id TEXT,
                error_file_id TEXT,
                created_at INTEGER NOT NULL,
                in_progress_at INTEGER,
                finalizing_at INTEGER,
                ended_at INTEGER,
                cancelling_at INTEGER,
                deleted_at INTEGER,
                -- The serve whose keeper is checking or finishing the batch, and until when its claim holds.
                keeper TEXT,
                keeper_until INTEGER
            );
            CREATE INDEX service_batches_by_key ON service_batches(project, create_key);
            CREATE INDEX service_batches_by_status ON service_batches(status);
            -- The dashboard's recent failures, without a scan of every request.
            CREATE INDEX requests_unsuccessful ON requests(id) WHERE state IN ('failed', 'expired');
            """),
        Migration(version: 11, sql: """
            -- Prompt caching: the group a request's leading content (tools, system prompt, all but its last message) puts
            -- it in, as a hash, and that content's estimated tokens; requests of one group share a cacheable prefix.
            ALTER TABLE requests ADD COLUMN prefix_group TEXT;
            ALTER TABLE requests ADD COLUMN prefix_tokens INTEGER NOT NULL DEFAULT 0;
            """),
        Migration(version: 12, sql: """
            -- A claimed request's group size, counted as it is claimed (Anthropic requests get a breakpoint only where
            -- others share the prefix).
            CREATE INDEX requests_by_prefix_group ON requests(job_id, prefix_group) WHERE prefix_group IS NOT NULL;
            """),
        Migration(version: 13, sql: """
            -- What caching saved on each answer (its reads at input price less their cost, less its writes' cost beyond
            -- input), in pico-USD; negative when writes were not paid back. Answers stored before are counted as saving nothing.
            ALTER TABLE results ADD COLUMN cache_saving_pico INTEGER NOT NULL DEFAULT 0;
            """),
    ])
}

/// Opens the database file Purser works in, creating and migrating it as needed.
public enum PurserDatabase {
    /// Opens an existing database to read it (status, results, reports), writing nothing, even beside it: this
    /// works in a read-only folder. A file an older purser wrote must first be upgraded by a command that writes.
    public static func openForReading(path: String) throws -> Database {
        try checkIsAFile(path)
        let database = try Database(readingExisting: path)
        let version = Int(try database.scalarInt("PRAGMA user_version") ?? 0)
        if version < 0 { throw Problem("\(path) has schema version \(version), which no purser writes: it is not a Purser database; pass --db PATH to one") }
        if version == 0 {
            guard try database.scalarInt("SELECT count(*) FROM sqlite_master") == 0 else { throw ForeignDatabase(path: path) }
            throw Problem("\(path) holds no Purser data yet (it is empty); submit a job first, or pass --db PATH")
        }
        guard version == Schema.migrator.migrations.count else {
            throw Problem(version < Schema.migrator.migrations.count
                ? "\(path) was written by an older purser; run a command that writes (such as 'purser run') where it can be written, to upgrade it"
                : "\(path) was written by a newer purser (schema \(version)); upgrade purser")
        }
        return database
    }

    /// A folder, a device (`/dev/null`) or a pipe is no database: said before SQLite tries it and writes a
    /// journal beside it, or answers with a disk error.
    static func checkIsAFile(_ path: String) throws {
        var status = stat()
        guard stat(path, &status) == 0 else { return }
        switch status.st_mode & S_IFMT {
        case S_IFREG: return
        case S_IFDIR: throw Problem("\(path) is a folder, not a database file; pass --db PATH to a file (it is created when missing)")
        default: throw Problem("\(path) is not a regular file (a device, a pipe or a socket); pass --db PATH to a database file")
        }
    }

    public static func open(path: String) throws -> Database {
        try checkIsAFile(path)
        // 16 KiB pages suit rows of a few hundred bytes: about a fifth faster to bulk-insert than 4 KiB.
        let database = try Database(path: path, pageSize: 16_384)
        // A 64 MiB page cache keeps the (job, custom_id) index in memory while a large file is stored.
        try database.execute("PRAGMA cache_size = -65536")
        try Schema.migrator.migrate(database)
        return database
    }
}
