import Foundation
import PurserCore
import PurserSQLite
import Synchronization

/// The batch figures: a `week` job through the fake provider's OpenAI-style batch API end to end (submit, plan,
/// upload, create, poll, download, store), beside the parse-only rate of the same lines measured in the same run.
enum BatchBench {
    struct Figures {
        var parseOnlyLinesPerSecond: Double
        var submitSeconds: Double
        var runSeconds: Double
        var uploadBytes = 0
        var writeMilliseconds: Int64 = 0
        var uploadMilliseconds: Int64 = 0
        var storedLines = 0
        var readMilliseconds: Int64 = 0
        var storeMilliseconds: Int64 = 0
        var batches = 0
        var results = 0
        var peakMiB = 0
        var linesSentTwice = 0
        var failed = 0
    }

    /// The fake model with batch prices, on a provider whose batch API speaks OpenAI's dialect.
    static func catalog(port: Int, tiers: Tiers) -> PricingCatalog {
        var catalog = DispatchBench.catalog(port: port, tiers: tiers)
        for index in catalog.models.indices { catalog.models[index].batchPrices = catalog.models[index].prices.scaled(basisPoints: 5_000) }
        for name in catalog.providers.keys { catalog.providers[name]?.batchDialect = .openai }
        return catalog
    }

    static func run(requests: Int, work: String, tiers: Tiers) async throws -> Figures {
        let server = try DispatchBench.FakeServer(latencyMilliseconds: 0, faults: ["--batch-delay-ms", "500"])
        defer { server.stop() }
        let catalog = catalog(port: server.port, tiers: tiers)
        let jobFile = work + "/batch-job.jsonl"
        var text = ""
        for index in 0..<requests {
            text += #"{"custom_id": "b\#(index)", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "small", "messages": [{"role": "system", "content": "You label support tickets."}, {"role": "user", "content": "Ticket \#(index): the invoice total does not match the order; please check and answer in one line."}], "max_tokens": 16}, "deadline": "week"}"#
            text += "\n"
        }
        try text.write(toFile: jobFile, atomically: true, encoding: .utf8)
        text = ""

        // The ceiling: the same lines read and parsed, nothing stored.
        let parseStarted = DispatchTime.now().uptimeNanoseconds
        var parser = RequestLineParser(catalog: catalog, defaults: .init(), submittedAt: benchNow, history: OutputHistory())
        let reader = try JobFileReader(path: jobFile)
        var parsed = 0
        while let line = try reader.nextLine() {
            if case .text(let number, let bytes) = line, case .success = parser.parse(bytes, lineNumber: number) { parsed += 1 }
        }
        let parseSeconds = Double(DispatchTime.now().uptimeNanoseconds - parseStarted) / 1e9

        let path = work + "/batch.db"
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        resetPeakMemory()
        let submitStarted = DispatchTime.now().uptimeNanoseconds
        _ = try JobSubmitter(database: try PurserDatabase.open(path: path), catalog: catalog).submit(files: [jobFile], options: SubmitOptions(force: true))
        let submitSeconds = Double(DispatchTime.now().uptimeNanoseconds - submitStarted) / 1e9

        var options = RunOptions(worker: "bench")
        options.concurrency = 16
        let environment = ["FAKE_KEY": "bench"]
        let events = Mutex<[BatchEvent]>([])
        let dispatcher = Dispatcher(
            storage: try DispatchStore(path: path, owner: "bench").storage,
            caller: HTTPProviderClient(environment: environment),
            catalog: catalog, environment: environment, options: options, onEvent: { event in
                if case .batch(let batch) = event { events.withLock { $0.append(batch) } }
            })
        let runStarted = DispatchTime.now().uptimeNanoseconds
        let summary = try await dispatcher.run()
        var figures = Figures(
            parseOnlyLinesPerSecond: Double(parsed) / parseSeconds, submitSeconds: submitSeconds,
            runSeconds: Double(DispatchTime.now().uptimeNanoseconds - runStarted) / 1e9)
        figures.peakMiB = peakMemoryMiB()
        figures.failed = summary.failed
        for event in events.withLock({ $0 }) {
            switch event.step {
            case .sent(_, let bytes, let write, let upload):
                figures.uploadBytes += bytes
                figures.writeMilliseconds += write
                figures.uploadMilliseconds += upload
                figures.batches += 1
            case .stored(let stored):
                figures.storedLines += stored.lines
                figures.readMilliseconds += stored.readMilliseconds
                figures.storeMilliseconds += stored.storeMilliseconds
            default: break
            }
        }
        figures.results = Int(try PurserDatabase.open(path: path).scalarInt("SELECT count(*) FROM results WHERE mode = 'batch'") ?? 0)
        let lines = server.stats()?["batch_lines"]?.objectValue?.members ?? []
        figures.linesSentTwice = lines.filter { ($0.value.intValue ?? 0) > 1 }.count
        return figures
    }
}
