import Foundation
import PurserCore
import PurserSQLite
import Synchronization

/// `purser run`: serves what is due and exits (or keeps serving with --watch).
enum RunCommand {
    /// Its options, each declared once: the spec lists them and the command reads them through these keys.
    enum Options {
        static let job = OptionKey.text("job", value: "job", help: "Only this job (number or name).")
        static let concurrency = OptionKey.integer("concurrency", value: "n", in: 1...RunOptions.maximumConcurrency, help: "Calls in flight at once (default: 16).")
        static let simulate = OptionKey.flag("simulate", help: "Answer every call with the built-in simulator: no network, no keys, results marked simulated.")
        static let speedup = OptionKey.number("speedup", value: "factor", in: 0.001...1_000_000, help: "With --simulate: divide the modelled latency by this (default: 1).")
        static let watch = OptionKey.flag("watch", help: "Keep serving as new jobs arrive, until interrupted.")
        static let grace = OptionKey.number("grace", value: "seconds", in: 0...3_600, help: "On SIGINT/SIGTERM, let calls in flight finish for this long (default: 10).")
        static let timeout = OptionKey.number("timeout", value: "seconds", in: 0.1...3_600, help: "Give up on one call after this long (default: 120).")
        static let backoffMs = OptionKey.integer("backoff-ms", value: "ms", in: 1...600_000, help: "The first retry's longest wait; it doubles per attempt, with full jitter (default: 100).")
        static let cooldown = OptionKey.number("cooldown", value: "seconds", in: 0.1...3_600, help: "Pause a provider this long when most of its recent calls fail (default: 30; longer while probes fail).")
        static let giveUpAfter = OptionKey.number("give-up-after", value: "seconds", in: 0.1...86_400, help: "Stop calling a provider none of whose calls has connected for this long (default: 30).")
        static let lease = OptionKey.number("lease", value: "seconds", in: 1...86_400, help: "How long a claimed request stays reserved without renewal (default: 180).")
        static let rpm = OptionKey.integer("rpm", value: "n", in: 1...RateLimits.maximumRequestsPerMinute, help: "Requests per minute for every model, instead of the tables' figures.")
        static let tpm = OptionKey.integer("tpm", value: "n", in: 1...RateLimits.maximumTokensPerMinute, help: "Tokens per minute for every model, instead of the tables' figures.")
        static let maxInFlightPerModel = OptionKey.integer("max-in-flight-per-model", value: "n", in: 1...RunOptions.maximumConcurrency, help: "Calls in flight to one model at once.")
        static let maxInFlightPerProvider = OptionKey.integer("max-in-flight-per-provider", value: "n", in: 1...RunOptions.maximumConcurrency, help: "Calls in flight to one provider at once.")
        static let allowLate = OptionKey.flag("allow-late", help: "Start calls after their latest start, or after the deadline has passed, instead of expiring the requests.")
        static let detach = OptionKey.flag("detach", help: "Send batches, then end without waiting for those still at the provider (a later run collects them).")
        static let quiet = OptionKey.flag("quiet", help: "No progress or step lines: only warnings, errors and the summary.")
    }

    static let spec = CommandSpec(
        name: "run",
        overview: "Serve planned requests: call the chosen models with retries, fallbacks and rate limits, and store every result.",
        options: [
            Options.job.option,
            Options.concurrency.option,
            Options.simulate.option,
            Options.speedup.option,
            Options.watch.option,
            Options.grace.option,
            Options.timeout.option,
            Options.backoffMs.option,
            Options.cooldown.option,
            Options.giveUpAfter.option,
            Options.lease.option,
            Options.rpm.option,
            Options.tpm.option,
            Options.maxInFlightPerModel.option,
            Options.maxInFlightPerProvider.option,
            Options.allowLate.option,
            Options.detach.option,
            Options.quiet.option,
            SharedOptions.database.option, SharedOptions.pricing.option, SharedOptions.json.option,
        ])

    static func run(_ arguments: ParsedArguments, context: CommandContext) async throws -> Int32 {
        let catalog = try context.loadCatalog(arguments)
        let options = try await options(arguments, context: context)
        let dispatcher = try dispatcher(options: options, catalog: catalog, arguments: arguments, context: context)
        let signals = SignalWatcher { Task { await dispatcher.stop() } }
        defer { signals.cancel() }
        let summary = try await dispatcher.run()
        guard let trouble = summary.trouble else { return 0 }
        context.console.error("Error: \(RunReporter.words(trouble))")
        return 1
    }

    /// The run service for `options` on the command's database: the simulator or real HTTP, its events worded on the
    /// console, and `onEvent` told of each first (the service's live figures).
    static func dispatcher(
        options: RunOptions, catalog: PricingCatalog, arguments: ParsedArguments, context: CommandContext,
        onEvent: @escaping @Sendable (RunEvent) -> Void = { _ in }
    ) throws -> Dispatcher {
        let store = try DispatchStore(path: context.databasePath(arguments), owner: options.worker)
        let caller: any ModelCaller = options.simulate
            ? Simulator(speedup: options.simulationSpeedup, clock: context.clock)
            : HTTPProviderClient(environment: context.environment)
        let reporter = RunReporter(console: context.console, json: arguments[SharedOptions.json], quiet: arguments[Options.quiet], simulated: options.simulate)
        return Dispatcher(
            storage: store.storage, caller: caller, catalog: catalog, environment: context.environment, options: options, clock: context.clock,
            onEvent: { event in
                onEvent(event)
                reporter.report(event)
            })
    }

    /// The run's options from its flags, each number bounded; the database must exist (a run never creates one),
    /// unless `databaseMustExist` is false (a serve, which makes its database once it has its port). `otherFiles`: the
    /// descriptors the process holds beside its calls and the usual few (a serve's connections).
    static func options(
        _ arguments: ParsedArguments, context: CommandContext, databaseMustExist: Bool = true, otherFiles: Int = 0
    ) async throws -> RunOptions {
        var options = RunOptions(worker: LeaseOwner.current().description)
        options.simulate = arguments[Options.simulate]
        options.watch = arguments[Options.watch]
        options.allowLate = arguments[Options.allowLate]
        options.detachBatches = arguments[Options.detach]
        options.afterBatchCall = context.afterBatchCall
        if let value = try arguments[Options.concurrency] { options.concurrency = value }
        // Each connection holds a socket: the engine opens no more than the process can hold open, beside its own
        // descriptors and the ones kept for the rest. Calls beyond them share connections over HTTP/2 or wait for one.
        let openFiles = OpenFileLimit.raised()
        let descriptors = openFiles - OpenFileLimit.reserved - otherFiles
        HTTPEngine.shared.limitDescriptors(to: descriptors)
        let connections = OpenFileLimit.connections(within: descriptors)
        if options.concurrency > connections {
            context.console.error("warning: --concurrency \(options.concurrency) is more connections than this process can hold open: its limit on open files "
                + "is \(openFiles) (raised to the system's hard limit), which leaves room for \(connections) beside the HTTP engine's own descriptors "
                + "(\(HTTPEngine.descriptorsPerShard) for each \(HTTPEngine.transfersPerShard) connections) and \(OpenFileLimit.reserved + otherFiles) kept for the rest. "
                + "Calls to a provider that multiplexes them over HTTP/2 share connections; over HTTP/1.1 at most \(connections) go at once and the rest wait for a connection. "
                + "Raise the hard limit ('ulimit -Hn', or LimitNOFILE for a service) to open more.")
        }
        if let value = try arguments[Options.speedup] {
            guard options.simulate else { throw UsageError(message: "--speedup shortens the simulator's latency: it goes with --simulate.", spec: spec) }
            options.simulationSpeedup = value
        }
        if let value = try arguments[Options.grace] { options.graceSeconds = value }
        if let value = try arguments[Options.timeout] { options.timeoutSeconds = value }
        if let value = try arguments[Options.lease] { options.leaseSeconds = value }
        if let value = try arguments[Options.cooldown] { options.cooldownSeconds = value }
        if let value = try arguments[Options.giveUpAfter] { options.health.unreachableAfterMilliseconds = Int64(value * 1000) }
        if let value = try arguments[Options.backoffMs] { options.retry.baseDelayMilliseconds = Int64(value) }
        options.limits = RateLimiter.Limits(
            requestsPerMinuteOverride: try arguments[Options.rpm],
            tokensPerMinuteOverride: try arguments[Options.tpm],
            inFlightPerModel: try arguments[Options.maxInFlightPerModel],
            inFlightPerProvider: try arguments[Options.maxInFlightPerProvider])
        let path = context.databasePath(arguments)
        if let reference = arguments[Options.job] {
            options.job = try await context.openExistingDatabase(arguments).workspace.job(reference).id
        } else if databaseMustExist {
            _ = try context.openExistingDatabase(arguments)
        }
        options.recovery = RecoveryFile(databasePath: path)
        options.startedCalls = StartedCalls(databasePath: path, owner: options.worker)
        options.workFolder = WorkFolder(databasePath: path)
        return options
    }
}

/// Stops the run on SIGINT or SIGTERM instead of killing the process.
final class SignalWatcher {
    private let sources: [any DispatchSourceSignal]
    /// The handler, let go of as the watch is cancelled. A cancelled source lets go of its own handler only later, on
    /// its queue, so a handler holding the run kept the run, and its database connection, open past the process's exit:
    /// the connection's close, which writes the database's log into its file, never came, and a copy of the file alone
    /// lacked the last results (`aRunLeavesEveryResultInTheDatabaseFileAlone`).
    private let handler: HandlerBox

    private final class HandlerBox: Sendable {
        private let handler: Mutex<(@Sendable () -> Void)?>
        init(_ handler: @escaping @Sendable () -> Void) { self.handler = Mutex(handler) }
        func call() { handler.withLock { $0 }?() }
        func release() { handler.withLock { $0 = nil } }
    }

    init(_ handler: @escaping @Sendable () -> Void) {
        let box = HandlerBox(handler)
        self.handler = box
        // A parent may have left these blocked; a blocked signal never reaches the source.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGINT)
        sigaddset(&unblock, SIGTERM)
        sigprocmask(SIG_UNBLOCK, &unblock, nil)
        sources = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { box.call() }
            source.resume()
            return source
        }
    }

    func cancel() {
        handler.release()
        for source in sources { source.cancel() }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}

/// Shows a run: one live line on a terminal; otherwise a log line when the progress changes and every 30 s at
/// most while it does not; JSON events with time and level with --json; with --quiet, only warnings, errors
/// and the summary.
final class RunReporter: Sendable {
    let console: Console
    let json: Bool
    let quiet: Bool
    let simulated: Bool
    /// Off a terminal, an unchanged progress line is written again after this long, so a log shows the run is alive.
    static let unchangedProgressSeconds: Double = 30

    init(console: Console, json: Bool, quiet: Bool = false, simulated: Bool) {
        self.console = console
        self.json = json
        self.quiet = quiet
        self.simulated = simulated
    }

    /// The last progress line written off a terminal (without its rate and ETA, which move every second), and when.
    private let lastProgress = Mutex<(key: String, at: Date)?>(nil)

    /// True when a progress line with `key` should be written now.
    private func progressIsNews(_ key: String) -> Bool {
        lastProgress.withLock { last in
            let now = Date()
            if let last, last.key == key, now.timeIntervalSince(last.at) < RunReporter.unchangedProgressSeconds { return false }
            last = (key, now)
            return true
        }
    }

    /// What the open batches say: how many, the oldest's age, and when the last is expected to end.
    static func batchWords(_ batches: [OpenBatchProgress], now: Int64) -> String? {
        guard let latest = batches.max(by: { $0.expectedEndAt < $1.expectedEndAt }) else { return nil }
        let oldest = batches.compactMap(\.submittedAt).min()
        return "\(count(batches.count, "batch", plural: "batches")) open" + (oldest.map { ", oldest \(DurationText.approximate(now - $0))" } ?? "")
            + ", expected by \(timestampText(latest.expectedEndAt))" + (latest.fromHistory ? " (from the batches seen)" : " (the providers' 24h window)")
    }

    func report(_ event: RunEvent) {
        switch event {
        case .started(let total, let open):
            if json {
                emit(level: "info", ["event": .string("started"), "requests": .number(String(total)), "open": .number(String(open)), "simulated": .bool(simulated)])
            } else if !quiet {
                console.error(log("info", "run started", "requests.open=\(open) requests.total=\(total)\(simulated ? " simulated=true" : "")"))
            }
        case .progress(let progress):
            let done = progress.succeeded + progress.failed + progress.expired
            let seconds = max(Double(progress.elapsedMilliseconds) / 1000, 0.001)
            let rate = Double(done) / seconds
            // The time left for live calls at the rate so far; batches end when their provider ends them.
            let live = max(progress.remaining - progress.inBatches, 0)
            let eta = rate > 0 ? Int64(Double(live) / rate * 1000) : nil
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let batchWords = RunReporter.batchWords(progress.batches, now: now)
            // Overall: the later of the live calls' ETA and the last batch's expected end.
            let batchesLeft = progress.batches.map(\.expectedEndAt).max().map { max($0 - now, 0) }
            let overall = [live > 0 ? eta : nil, batchesLeft].compactMap { $0 }.max()
            let etaText = live == 0 && progress.inBatches > 0
                ? "waiting on batches" + (batchWords.map { " (\($0))" } ?? "")
                : "eta \(overall.map(DurationText.approximate) ?? "-")" + (batchWords.map { "; \($0)" } ?? "")
            if json {
                let batches: [JSONValue] = progress.batches.map { batch in
                    let age: JSONValue = batch.submittedAt.map { .number(String(max(now - $0, 0))) } ?? .null
                    return .object(JSONObject([
                        "batch": .number(String(batch.id)), "provider": .string(batch.provider), "model": .string(batch.model),
                        "requests": .number(String(batch.requests)), "age_ms": age,
                        "expected_end": .string(timestampText(batch.expectedEndAt)), "expected_from_history": .bool(batch.fromHistory),
                    ]))
                }
                let etaValue: JSONValue = overall.map { .number(String($0)) } ?? .null
                emit(level: "info", [
                    "event": .string("progress"), "succeeded": .number(String(progress.succeeded)), "failed": .number(String(progress.failed)),
                    "expired": .number(String(progress.expired)), "in_flight": .number(String(progress.inFlight)),
                    "in_batches": .number(String(progress.inBatches)),
                    "remaining": .number(String(max(progress.remaining, 0))), "spend_usd": .string(progress.spend.exactUSD),
                    "eta_ms": etaValue, "batches": .array(batches),
                ])
            } else if !quiet {
                let counts = "done \(done)/\(done + max(progress.remaining, 0))  \(String(format: "%.1f", rate))/s  in flight \(progress.inFlight)\(progress.inBatches > 0 ? "  in batches \(progress.inBatches)" : "")  spend \(progress.spend.formatted)\(simulated ? " (simulated)" : "")"
                let line = counts + "  " + etaText
                if console.isTerminal {
                    console.errorInline("\r\u{1B}[2K" + line)
                } else if progressIsNews("\(done) \(progress.inFlight) \(progress.inBatches) \(progress.remaining) \(progress.spend.picoUSD) \(progress.batches.map { "\($0.id)@\($0.expectedEndAt)" })") {
                    console.error(log("info", "progress", line))
                }
            }
        case .notice(let notice):
            warn(Self.words(notice))
        case .held(let reason):
            warn(Self.words(reason))
        case .batch(let event):
            if json {
                var object = JSONObject([
                    "time": .string(Date().formatted(.iso8601)), "level": .string(event.isWarning ? "warning" : "info"), "event": .string("batch"),
                    "batch": .number(String(event.batch)),
                ])
                switch event.step {
                case .formed: object["step"] = .string("formed"); object["requests"] = .number(String(event.requests))
                case .sent(_, let bytes, _, _): object["step"] = .string("sent"); object["bytes"] = .number(String(bytes))
                case .ended(_, let status): object["step"] = .string("ended"); object["provider_status"] = .string(status)
                case .stored(let stored):
                    object["step"] = .string("stored"); object["lines"] = .number(String(stored.lines)); object["answers"] = .number(String(stored.answers))
                }
                object["message"] = .string(Self.words(event))
                console.print(JSONWriter.string(.object(object)))
            } else if !quiet || event.isWarning {
                if console.isTerminal { console.errorInline("\r\u{1B}[2K") }
                console.error(log(event.isWarning ? "warning" : "info", Self.words(event), ""))
            }
        case .finished(let summary):
            if json {
                emit(level: summary.trouble == nil ? "info" : "error", [
                    "event": .string("finished"), "succeeded": .number(String(summary.succeeded)), "failed": .number(String(summary.failed)),
                    "expired": .number(String(summary.expired)), "retries": .number(String(summary.retried)),
                    "fallbacks": .number(String(summary.fellBack)), "held": .number(String(summary.held)), "spend_usd": .string(summary.spend.exactUSD),
                    "simulated": .bool(summary.simulated),
                    "elapsed_ms": .number(String(summary.elapsedMilliseconds)), "left_queued": .array(summary.leftQueued.map { .string(Self.words($0)) }),
                    "recovered": .number(String(summary.recovered)), "kept_for_recovery": .number(String(summary.keptForRecovery)),
                    "storage_failure": summary.storageFailure.map { .string($0) } ?? .null,
                ])
                return
            }
            if console.isTerminal { console.errorInline("\r\u{1B}[2K") }
            console.print("run finished in \(DurationText.approximate(summary.elapsedMilliseconds))\(summary.simulated ? " (simulated)" : ""): \(summary.succeeded) succeeded, \(summary.failed) failed, \(summary.expired) expired; \(count(summary.retried, "retry", plural: "retries")), \(count(summary.fellBack, "fallback"))")
            console.print("spend: \(summary.spend.formatted)\(summary.simulated ? " (simulated: no provider was called or charged)" : "")")
            if summary.recovered > 0 { console.print("note: \(summary.recovered) paid answers from an earlier run's recovery file were stored first") }
            if summary.keptForRecovery > 0 {
                console.print("note: \(summary.keptForRecovery) paid answers could not be written to the database and are kept in its .recovery file; the next run stores them without calling again")
            }
            for reason in summary.leftQueued { console.print("note: \(Self.words(reason))") }
        }
    }

    /// What a run left undone, in words.
    /// A warning line (a JSON event with --json); the same words twice within two seconds say nothing new (several
    /// workers can meet one cause at once).
    func warn(_ message: String) {
        guard firstSaying(message) else { return }
        if json { emit(level: "warning", ["event": .string("notice"), "message": .string(message)]) } else {
            if console.isTerminal { console.errorInline("\r\u{1B}[2K") }
            console.error(log("warning", message, ""))
        }
    }

    /// Why the run exits non-zero, with what to do about it.
    static func words(_ trouble: RunTrouble) -> String {
        switch trouble {
        case .answersLost(let lost, let storageFailure):
            let named = lost.prefix(10).joined(separator: ", ") + (lost.count > 10 ? " and \(lost.count - 10) more" : "")
            return (storageFailure.map { $0 + "; " } ?? "")
                + "\(lost.count) paid answer\(lost.count == 1 ? "" : "s") could be neither stored nor kept in the recovery file and "
                + "\(lost.count == 1 ? "is" : "are") lost (\(named)); their calls were billed"
        case .storageFailed(let failure):
            return failure
        case .noKeys(let variables):
            return "no request could be served: no provider can be used, since none has its key set; set "
                + variables.joined(separator: ", ") + " (any one with its provider's models), or pass --simulate to rehearse on the simulator"
        case .requestsFailed(let count):
            return "\(count) request\(count == 1 ? "" : "s") failed; 'purser results JOB --only failed' shows why"
        case .providersUnusable(let providers):
            return providers.sorted { $0.key < $1.key }.map { "provider \($0.key) could not be used: \($0.value)" }.joined(separator: "; ")
        }
    }

    static func words(_ reason: LeftQueued) -> String {
        switch reason {
        case .providerDisabled(let provider, let why): "provider \(provider) cannot be used in this run: \(why)"
        case .onUnusableProviders(let requests): "\(requests) requests stay queued on providers that cannot be used now"
        case .unplanned(let requests): "\(requests) requests have no plan: no usable model has room before their deadline"
        case .heldByCap(let requests):
            "\(requests) requests are held by a budget cap (see 'purser budget show'); raising the cap with 'purser budget set' or the start of the next month releases them"
        case .notServed(let requests): "\(requests) requests were not served (the run stopped early)"
        case .inBatches(let requests):
            "\(requests) requests are in batches (at their provider, or still to be sent); the next 'purser run' carries them on"
        }
    }

    /// Why a cap holds requests, with what releases them.
    static func words(_ reason: HoldReason) -> String {
        reason.stored + "; raise the cap with 'purser budget set'" + (reason.waitFor.map { ", or wait for \($0)" } ?? "")
    }

    private let recentNotices = Mutex<[String: Date]>([:])

    private func firstSaying(_ message: String) -> Bool {
        recentNotices.withLock { recent in
            let now = Date()
            recent = recent.filter { now.timeIntervalSince($0.value) < 2 }
            guard recent[message] == nil else { return false }
            recent[message] = now
            return true
        }
    }

    /// One JSON event per line, each with its time and level first.
    private func emit(level: String, _ members: KeyValuePairs<String, JSONValue>) {
        var object = JSONObject(["time": .string(Date().formatted(.iso8601)), "level": .string(level)])
        for (key, value) in members { object[key] = value }
        console.print(JSONWriter.string(.object(object)))
    }

    /// `2026-11-24T10:00:00Z info purser.run: message key=value`, as swift-log would print it.
    private func log(_ level: String, _ message: String, _ metadata: String) -> String {
        "\(Date().formatted(.iso8601)) \(level) purser.run: \(message)\(metadata.isEmpty ? "" : " " + metadata)"
    }
}
