import Foundation
import PurserCore
import PurserServe
import PurserSQLite
import Synchronization

/// `purser serve`: the OpenAI and Anthropic batch APIs, Purser's budgets, report, metrics and dashboard on one
/// port, and the run service beside them, serving new batches as they arrive (`run --watch`). SIGTERM or SIGINT
/// stops accepting, finishes the HTTP exchanges in flight, then lets calls drain within the grace period.
enum ServeCommand {
    enum Options {
        static let listen = OptionKey.text("listen", value: "host:port", help: "Where to listen (default: 127.0.0.1:8080; port 0 picks a free one).")
    }

    static let spec = CommandSpec(
        name: "serve",
        overview: "Serve the OpenAI Files and Batches API and the Anthropic Message Batches API, with project keys and a live dashboard.",
        options: [
            Options.listen.option,
            RunCommand.Options.concurrency.option,
            RunCommand.Options.simulate.option,
            RunCommand.Options.speedup.option,
            RunCommand.Options.grace.option,
            RunCommand.Options.timeout.option,
            RunCommand.Options.backoffMs.option,
            RunCommand.Options.cooldown.option,
            RunCommand.Options.giveUpAfter.option,
            RunCommand.Options.lease.option,
            RunCommand.Options.rpm.option,
            RunCommand.Options.tpm.option,
            RunCommand.Options.maxInFlightPerModel.option,
            RunCommand.Options.maxInFlightPerProvider.option,
            RunCommand.Options.allowLate.option,
            RunCommand.Options.quiet.option,
            SharedOptions.database.option, SharedOptions.pricing.option, SharedOptions.json.option,
        ],
        discussion: """
            Code written for the providers' batch APIs works by changing only the base URL and key:
            openai.OpenAI(base_url="http://HOST:PORT/v1", api_key=KEY) and
            anthropic.Anthropic(base_url="http://HOST:PORT", api_key=KEY). Each batch becomes a Purser job,
            planned across models by cost and served by this process. Keys come from purser keys create.
            GET /healthz answers without a key; GET /metrics (Prometheus) needs an admin key; the dashboard
            is at / (sign in with a key).
            """)

    /// `host:port`, checked.
    static func listenAddress(_ text: String?) throws -> (host: String, port: UInt16) {
        guard let text else { return ("127.0.0.1", 8080) }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = UInt16(parts[1]), !parts[0].isEmpty else {
            throw UsageError(message: "--listen: '\(text)' is not HOST:PORT (such as 127.0.0.1:8080).", spec: spec)
        }
        let host = parts[0] == "localhost" ? "127.0.0.1" : String(parts[0])
        var address = in_addr()
        guard inet_pton(AF_INET, host, &address) == 1 else {
            throw UsageError(message: "--listen: '\(parts[0])' is not an IPv4 address (such as 127.0.0.1, or 0.0.0.0 for every interface).", spec: spec)
        }
        return (host, port)
    }

    static func run(_ arguments: ParsedArguments, context: CommandContext) async throws -> Int32 {
        let (host, port) = try listenAddress(arguments[Options.listen])
        let catalog = try context.loadCatalog(arguments)
        let path = context.databasePath(arguments)
        // Its clients' connections are open files too.
        var options = try await RunCommand.options(arguments, context: context, databaseMustExist: false, otherFiles: HTTPLimits().connections)
        options.watch = true
        let live = Mutex(LiveFigures())
        live.withLock { $0.simulated = options.simulate }
        let console = context.console
        let service = try PurserService(
            databasePath: path, catalog: catalog, clock: context.clock, host: host, port: port,
            live: { live.withLock { $0 } }, log: { console.error($0) })
        let dispatcher = try RunCommand.dispatcher(options: options, catalog: catalog, arguments: arguments, context: context) { event in
            guard case .progress(let progress) = event else { return }
            live.withLock { figures in
                (figures.inFlight, figures.retried, figures.fellBack, figures.slowDowns) =
                    (progress.inFlight, progress.retried, progress.fellBack, progress.slowDowns)
            }
        }
        // Signals are watched before the address is printed: whoever reads it may stop the serve at once.
        let signals = SignalWatcher {
            // On a dispatch thread: the HTTP side stops first (its exchanges finish), then the calls drain.
            service.stop(waitingUpTo: 30)
            Task { await dispatcher.stop() }
        }
        defer { signals.cancel() }
        // The address goes to standard output, alone on its line, so a script (or a test) can read the port.
        console.print("purser serve: listening on http://\(service.host):\(service.port)\(options.simulate ? " (simulated: no provider is called)" : "")")
        if host != "127.0.0.1" && host != "localhost" {
            console.error("warning: listening on \(host), not only loopback: every request still needs a project key, but the traffic is plain HTTP; put TLS in front")
        }
        let summary = try await dispatcher.run()
        service.stop(waitingUpTo: 30)
        writeLogIntoFile(path, console: console)
        guard let trouble = summary.trouble else { return 0 }
        console.error("Error: \(RunReporter.words(trouble))")
        return 1
    }

    /// The serve has stopped, but its threads (the accept loop, the keeper, each connection's) may still hold their
    /// database connections as the process exits, and only the last one's close writes the log into the file: it is
    /// written out here, so that a copy of the file alone holds everything the serve stored.
    static func writeLogIntoFile(_ path: String, console: Console) {
        do {
            if try !StoreFile.open(path: path).writeLogIntoFile() {
                console.error("warning: another process is using \(path), so its log (\(path)-wal) was not written into it; keep the two together")
            }
        } catch {
            console.error("warning: could not write the log of \(path) into it (\(error)); keep \(path)-wal beside it, where SQLite reads it")
        }
    }
}
