import Foundation
import Testing
@testable import PurserCLI
import PurserCore
@testable import PurserSQLite
import TestSupport

@Test func rootHelpListsTheSubcommands() async {
    let run = await purser(["--help"])
    #expect(run.code == 0)
    #expect(run.out == """
        OVERVIEW: Purser schedules batches of LLM prompts on the cheapest models that meet their quality and deadline.

        USAGE: purser <subcommand> [--version] [--generate-completion-script <shell>]

        OPTIONS:
          --version                 Show the version.
          --generate-completion-script <shell>
                                    Print a completion script for a shell: bash, zsh or fish.
          -h, --help                Show help information.

        SUBCOMMANDS:
          submit                    Store JSONL job files as jobs (each file is one job).
          estimate                  Plan a job file without submitting it: the mix, the estimated cost and the saving.
          plan                      Plan a job: the cheapest model and mode for each request, with cost, baseline and saving.
          run                       Serve planned requests: call the chosen models with retries, fallbacks and rate limits, and store every result.
          status                    Show jobs: requests by state, what they spent, the estimate and baseline of their plans, and the budgets' use.
          results                   Write a job's results: OpenAI batch output (line for line), Anthropic batch results, JSON lines or CSV.
          report                    Report spending: requests, tokens, cost, share and savings by model, provider, project, job, day, month, tier or mode, with budgets and a forecast.
          budget                    Set, show or clear spending caps: per project for every month or one month (UTC), or per job.
          cancel                    Cancel a job's requests that have not started; running ones finish.
          retry                     Queue a job's failed, expired and cancelled requests again, with fresh attempts.
          pricing                   List, check or import the pricing tables.
          serve                     Serve the OpenAI Files and Batches API and the Anthropic Message Batches API, with project keys and a live dashboard.
          keys                      Create, list or revoke the project keys that purser serve checks on every request.

          See 'purser help <subcommand>' for detailed help.

        """)
    #expect(await purser([]).code == 64)
}

@Test func subcommandHelpShowsArgumentsAndOptions() async {
    let run = await purser(["help", "plan"])
    #expect(run.code == 0)
    #expect(run.out == """
        OVERVIEW: Plan a job: the cheapest model and mode for each request, with cost, baseline and saving.

        USAGE: purser plan <job> [--explain <custom-id>] [--simulate] [--db <path>] [--pricing <dir>] [--json]

        ARGUMENTS:
          <job>                     The job's number or name.

        OPTIONS:
          --explain <custom-id>     Show every candidate model for one request, with its cost or why it was excluded.
          --simulate                Plan as if every provider were usable (the built-in simulator needs no keys).
          --db <path>               The SQLite file (default: $PURSER_DB or ./purser.db).
          --pricing <dir>           The pricing tables folder (default: $PURSER_PRICING or ./pricing).
          --json                    Print machine-readable JSON.
          -h, --help                Show help information.

        """)
    #expect(await purser(["plan", "--help"]).out == run.out)
}

@Test func usageErrorsSayWhatToDoAndExit64() async {
    let unknown = await purser(["submit", "x.jsonl", "--projcet", "p"])
    #expect(unknown.code == 64)
    #expect(unknown.out.isEmpty)
    #expect(unknown.error.hasPrefix("""
        Error: Unknown option '--projcet'. Did you mean '--project'?
        Usage: purser submit <files> ...
        """))
    #expect(unknown.error.hasSuffix("  See 'purser submit --help' for more information.\n"))

    let missing = await purser(["plan"])
    #expect(missing.code == 64)
    #expect(missing.error.hasPrefix("Error: Missing expected argument '<job>'.\n"))

    let subcommand = await purser(["sumbit"])
    #expect(subcommand.code == 64)
    #expect(subcommand.error.hasPrefix("Error: Unknown subcommand 'sumbit'. Did you mean 'submit'?\n"))

    let badQuality = await purser(["submit", "x.jsonl", "--quality", "ultra"])
    #expect(badQuality.code == 64)
    #expect(badQuality.error.hasPrefix("Error: --quality: unknown quality tier \"ultra\"; use one of basic (30), standard (45), premium (55), frontier (62) or a number 0–100.\n"))

    let badDeadline = await purser(["estimate", "x.jsonl", "--deadline", "yesterday"])
    #expect(badDeadline.code == 64)
    #expect(badDeadline.error.hasPrefix("Error: --deadline: deadline 'yesterday' is not a duration"))

    let valueMissing = await purser(["submit", "x.jsonl", "--name"])
    #expect(valueMissing.error.hasPrefix("Error: Missing value for '--name <name>'.\n"))
}

@Test func submitPlanAndStatusWorkEndToEnd() async throws {
    let database = temporaryDatabasePath()
    let quickstart = repository.appendingPathComponent("jobs/quickstart.jsonl").path
    let submitted = await purser(["submit", quickstart], database: database)
    #expect(submitted.code == 0)
    #expect(submitted.out.hasPrefix("job 1 \"quickstart\" (project default): "))
    #expect(submitted.out.hasSuffix("next: purser plan 1 --simulate to see the plan, or purser run --job 1 --simulate to serve it\n"))

    let again = await purser(["submit", quickstart], database: database)
    #expect(again.out.hasPrefix("job 1 \"quickstart\" already holds these bytes"))

    let plan = await purser(["plan", "quickstart", "--simulate", "--json"], database: database)
    #expect(plan.code == 0)
    let json = try JSONParser.parse(plan.out).objectValue!
    let requests = json["requests"]!.intValue!
    #expect(json["planned"]!.intValue! == requests)
    let estimated = try Money(usd: json["estimated_cost_usd"]!.stringValue!)
    let baseline = try Money(usd: json["baseline_cost_usd"]!.stringValue!)
    #expect(estimated < baseline)
    // The mix adds up to the total exactly.
    let mix = json["mix"]!.arrayValue!.map { $0.objectValue! }
    #expect(mix.reduce(0) { $0 + $1["requests"]!.intValue! } == requests)
    #expect(try mix.reduce(Money.zero) { $0 + (try Money(usd: $1["estimated_cost_usd"]!.stringValue!)) } == estimated)

    let status = await purser(["status", "1", "--json"], database: database)
    let job = try JSONParser.parse(status.out).arrayValue![0].objectValue!
    #expect(job["states"]! == .object(JSONObject(["planned": .number(String(requests))])))
    #expect(job["estimated_cost_usd"]!.stringValue == estimated.exactUSD)

    let explain = await purser(["plan", "1", "--simulate", "--explain", "req-1"], database: database)
    #expect(explain.code == 0)
    #expect(explain.out.hasPrefix("Request \"req-1\": quality floor "))
    #expect(explain.out.contains("quality 24 is below the floor"))
}

/// `plan` says whether the estimate fits what each cap over the job has left; `--explain` of a custom id the job's
/// waiting requests do not have is an error naming it.
@Test func thePlanSaysWhetherItsEstimateFitsEachCapAndExplainNamesAnUnknownCustomID() async throws {
    let database = temporaryDatabasePath()
    _ = await purser(["submit", repository.appendingPathComponent("jobs/quickstart.jsonl").path], database: database)
    #expect(await purser(["budget", "set", "0.000001"], database: database).code == 0)
    #expect(await purser(["budget", "set", "100", "--job", "1"], database: database).code == 0)
    let plan = await purser(["plan", "1", "--simulate"], database: database)
    #expect(plan.code == 0)
    #expect(plan.out.contains("budget: project default's budget for 2026-11 (simulated ledger) has $0.000001 left of $0.000001, less than the estimate: "
        + "requests past it will be held until the cap is raised or the month ends"), "\(plan.out)")
    #expect(plan.out.contains("budget: job 1 (quickstart)'s cap (simulated ledger) has $100.00 left of $100.00; the estimate fits"), "\(plan.out)")
    let unknown = await purser(["plan", "1", "--simulate", "--explain", "no-such-line"], database: database)
    #expect(unknown.code == 1)
    #expect(unknown.error == "Error: job 1 has no request with custom_id \"no-such-line\" waiting to be served (running and finished requests are not planned)\n")
}

/// Results of a job that does not exist are an error that writes nothing, not even an empty output file.
@Test func resultsOfAnUnknownJobWriteNoFile() async throws {
    let database = temporaryDatabasePath()
    _ = await purser(["submit", repository.appendingPathComponent("jobs/quickstart.jsonl").path], database: database)
    let output = URL(fileURLWithPath: database).deletingLastPathComponent().appendingPathComponent("results.jsonl").path
    let results = await purser(["results", "no-such-job", "--output", output], database: database)
    #expect(results.code == 1)
    #expect(results.error == "Error: no job 'no-such-job'; 'purser status' lists the jobs\n")
    #expect(!FileManager.default.fileExists(atPath: output))
}

@Test func withoutKeysOrSimulateNothingIsPlannedAndThePlanSaysWhy() async {
    let database = temporaryDatabasePath()
    _ = await purser(["submit", repository.appendingPathComponent("jobs/quickstart.jsonl").path], database: database)
    let plan = await purser(["plan", "1"], database: database)
    #expect(plan.code == 0)
    #expect(plan.out.contains("requests cannot be placed"))
    #expect(plan.out.contains("not considered (no key set): anthropic, deepseek, google, groq, mistral, openai; set their keys or pass --simulate"))
    let keyed = await purser(["plan", "1"], environment: ["GROQ_API_KEY": "x"], database: database)
    #expect(keyed.out.contains("groq/openai/gpt-oss"))
    #expect(!keyed.out.contains("x\n"))
}

@Test func rejectedSubmitExitsOneAndStoresNothing() async {
    let database = temporaryDatabasePath()
    let file = testFiles.appendingPathComponent("bad-\(UUID().uuidString).jsonl").path
    _ = FileManager.default.createFile(atPath: file, contents: Data("{\"prompt\": \"ok\"}\n{oops\n".utf8))
    let run = await purser(["submit", file], database: database)
    #expect(run.code == 1)
    #expect(run.error == """
        \(file):2: invalid JSON at column 2: expected a quoted member name
        Error: \(file) has 1 bad line; nothing was stored. Fix it, or pass --skip-invalid to store the good lines and keep the rejects on the job.

        """)
    #expect(!FileManager.default.fileExists(atPath: database), "a failed first submit must not leave a database behind")
}

@Test func statusWithoutADatabaseDoesNotCreateOne() async {
    let database = temporaryDatabasePath()
    let run = await purser(["status"], database: database)
    #expect(run.code == 1)
    #expect(run.error == "Error: no database at \(database); submit a job first, or pass --db PATH\n")
    #expect(!FileManager.default.fileExists(atPath: database))
}

@Test func pricingValidateAndListReadTheBundledTables() async {
    let validate = await purser(["pricing", "validate"])
    #expect(validate.code == 0)
    #expect(validate.out == "ok: 20 models from 6 providers, 4 reference rows (named by lines, never served), 4 quality tiers, 5 deadline tiers\n")
    let list = await purser(["pricing", "list"])
    #expect(list.out.hasPrefix("model "))
    #expect(list.out.contains("deepseek/deepseek-flash"))
    #expect(list.out.contains("sync,offpeak"))
}

@Test func importLiteLLMWritesValidTablesAndCountsWhatItSkipped() async throws {
    let output = testFiles.appendingPathComponent("import-\(UUID().uuidString).json").path
    let litellm = repository.appendingPathComponent("Tests/Fixtures/litellm-excerpt.json").path
    let run = await purser(["pricing", "import-litellm", litellm, "--providers", "openai,anthropic", "--output", output, "--price-date", "2026-11-24"])
    #expect(run.code == 0)
    #expect(run.out.isEmpty)
    #expect(run.error.hasPrefix("imported 8 chat models from \(litellm) (8 with quality kept from the current tables, 0 unrated)\n"))
    #expect(run.error.contains(" entries (--list-skipped lists each):\n"))
    #expect(run.error.contains("  1  documentation entry, not a model\n"))
    let document = try JSONParser.parse(Array(try #require(FileManager.default.contents(atPath: output))))
    let ids = document.objectValue!["models"]!.arrayValue!.compactMap { $0.objectValue!["id"]!.stringValue }
    #expect(ids.contains("openai/gpt-4o-mini"))
    #expect(ids.allSatisfy { $0.hasPrefix("openai/") || $0.hasPrefix("anthropic/") })
}

@Test func aPlanSavedLateKeepsThePlansOfRequestsClaimedMeanwhile() async throws {
    // Two `purser run` processes can plan the same job at once; the second must not fail on requests the
    // first has already claimed, nor change the plan they are being served on.
    let path = temporaryDatabasePath()
    #expect(await purser(["submit", repository.appendingPathComponent("jobs/quickstart.jsonl").path], database: path).code == 0)
    let database = try PurserDatabase.open(path: path)
    let store = PlanStore(database: database)
    let catalog = try PricingCatalog.load(directory: repository.appendingPathComponent("pricing").path)
    let planner = Planner(context: PlanningContext(catalog: catalog, now: 1_795_478_400_000, usableProviders: Set(catalog.providers.keys)))
    let requests = try store.plannableRequests(jobs: [1])
    let plan = planner.plan(requests)
    try store.save(plan, requests: requests, jobs: [1], now: 1_795_478_400_000)
    try database.execute("UPDATE requests SET state = 'running' WHERE id IN (1, 2)")
    try database.execute("UPDATE request_plans SET queue = 0 WHERE request_id IN (1, 2)")
    try database.execute("INSERT INTO plan_lines (model, mode, latest_start) VALUES ('claimed/elsewhere', 'sync', 0)")
    try database.execute("UPDATE request_plans SET line = last_insert_rowid() WHERE request_id IN (1, 2)")
    try store.save(plan, requests: requests, jobs: [1], now: 1_795_478_400_000)
    let kept = try database.scalarInt(
        "SELECT count(*) FROM request_plans JOIN plan_lines ON plan_lines.id = request_plans.line WHERE plan_lines.model = 'claimed/elsewhere'")
    #expect(kept == 2)
    #expect(try database.scalarInt("SELECT count(*) FROM request_plans") == Int64(plan.count - plan.unplaced))
    #expect(try database.scalarInt("SELECT count(*) FROM request_plans WHERE queue = 1") == Int64(plan.count - plan.unplaced - 2))
}

@Test func theBuiltInTablesAreThePricingFolderAndServeWhereNoFolderIsGiven() async throws {
    let folder = repository.appendingPathComponent("pricing")
    let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }.sorted()
    #expect(BundledPricing.files.map(\.name).sorted() == names, "run scripts/bundle-pricing.sh after changing pricing/")
    for (name, text) in BundledPricing.files {
        var file = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
        while file.hasSuffix("\n") { file.removeLast() }
        #expect(text == file, "\(name) differs from pricing/\(name): run scripts/bundle-pricing.sh")
    }
    // The executable, run in a folder with no tables and no PURSER_PRICING, plans with the built-in ones.
    let elsewhere = testFiles.appendingPathComponent("purser-no-tables-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: elsewhere, withIntermediateDirectories: true)
    let process = Process()
    process.executableURL = products.appendingPathComponent("purser")
    process.arguments = ["pricing", "validate"]
    process.currentDirectoryURL = elsewhere
    process.environment = ProcessInfo.processInfo.environment.filter { $0.key != "PURSER_PRICING" }
    let out = elsewhere.appendingPathComponent("out.txt")
    _ = FileManager.default.createFile(atPath: out.path, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: out)
    try process.run()
    await exited(process)
    #expect(process.terminationStatus == 0)
    #expect(try String(contentsOf: out, encoding: .utf8).hasPrefix("ok: 20 models from 6 providers"))
}

/// A choice option's values come from its type: the help lists them with the default marked, and any other value is
/// refused before the command runs (issue 18: hand-written lists had drifted from the types).
@Test func aChoiceOptionsHelpAndCheckComeFromItsType() async {
    let help = await purser(["report", "--help"]).out
    let groupings = ReportQuery.Grouping.allCases.map { $0 == .model ? "model (default)" : $0.rawValue }
    #expect(help.contains(groupings.dropLast().joined(separator: ", ") + " or " + groupings.last!), "\(help)")
    #expect(await purser(["results", "--help"]).out.contains("openai (default), anthropic, jsonl or csv."))

    let only = await purser(["results", "1", "--only", "running"])
    #expect(only.code == 64)
    #expect(only.error.hasPrefix("Error: --only: 'running' is not one of succeeded, failed.\n"), "\(only.error)")
}

/// Grouped commands take their subcommands by name, each with its own help and options (issue 18).
@Test func budgetAndPricingAreGroupsOfSubcommandsEachWithItsOwnHelp() async {
    let group = await purser(["budget", "--help"])
    #expect(group.code == 0 && group.out.contains("USAGE: purser budget <subcommand>"))
    for name in ["set", "show", "clear"] { #expect(group.out.contains("\n  \(name) "), "\(name) in \(group.out)") }
    let set = await purser(["budget", "help", "set"])
    #expect(set.out.hasPrefix("OVERVIEW: Set a cap") && set.out.contains("USAGE: purser budget set <usd> "), "\(set.out)")
    #expect(await purser(["budget", "set", "--help"]).out == set.out)
    #expect(!(await purser(["budget", "show", "--help"]).out.contains("--warn-at")), "show takes only its own options")
    let importing = await purser(["pricing", "import-litellm"])
    #expect(importing.code == 64 && importing.error.hasPrefix("Error: Missing expected argument '<file>'.\nUsage: purser pricing import-litellm <file>"))
    let unknown = await purser(["pricing", "lsit"])
    #expect(unknown.code == 64 && unknown.error.hasPrefix("Error: Unknown subcommand 'lsit' of 'pricing'; use list, validate or import-litellm. Did you mean 'list'?"))
}

/// The completion scripts come from the same declarations as parsing and help: bash, run for real, completes
/// commands, nested subcommands, their own flags and a choice's values.
@Test func completionScriptsCompleteCommandsSubcommandsFlagsAndChoices() async throws {
    let script = await purser(["--generate-completion-script", "bash"])
    #expect(script.code == 0)
    let file = testFiles.appendingPathComponent("purser-completion-\(UUID().uuidString).bash")
    try script.out.write(to: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: file) }
    func completions(_ words: [String]) async throws -> Set<String> {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        let quoted = words.map { "'\($0)'" }.joined(separator: " ")
        process.arguments = ["-c", "source '\(file.path)'; COMP_WORDS=(\(quoted)); COMP_CWORD=\(words.count - 1); _purser; printf '%s\\n' \"${COMPREPLY[@]}\""]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        await exited(process)
        return Set(String(decoding: out, as: UTF8.self).split(separator: "\n").map(String.init))
    }
    await #expect(try completions(["purser", "bu"]) == ["budget"])
    await #expect(try completions(["purser", "budget", ""]).isSuperset(of: ["set", "show", "clear"]))
    await #expect(try completions(["purser", "budget", "set", "--w"]) == ["--warn-at"])
    await #expect(try completions(["purser", "budget", "show", "--w"]).isEmpty, "show has no --warn-at")
    await #expect(try completions(["purser", "report", "--by", ""]) == Set(ReportQuery.Grouping.allCases.map(\.rawValue)))

    let fish = await purser(["--generate-completion-script", "fish"]).out
    #expect(fish.contains("-a set -d 'Set a cap") && fish.contains("-l warn-at"))
    #expect(await purser(["--generate-completion-script", "zsh"]).out.hasPrefix("#compdef purser\n"))
    #expect(await purser(["--generate-completion-script", "tcsh"]).code == 64)
}

/// Submit stores each request's prefix group and its leading content's tokens, and the body as it was written.
@Test func submitStoresEachRequestsPrefixGroupAndItsBodyUntouched() async throws {
    let database = temporaryDatabasePath()
    let system = String(repeating: "You label support tickets by urgency. ", count: 120)
    var lines: [String] = []
    for index in 0..<6 {
        let lead = index < 4 ? system : "Different instructions \(index)."
        lines.append(#"{"custom_id": "t\#(index)",  "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-5-mini",  "max_tokens": 20, "messages": [{"role": "system", "content": "\#(lead)"}, {"role": "user", "content": "Ticket \#(index)"}]}}"#)
    }
    let file = testFiles.appendingPathComponent("groups-\(UUID().uuidString).jsonl")
    try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
    #expect(await purser(["submit", file.path], database: database).code == 0)
    let rows = try query(database, "SELECT custom_id, prefix_group, prefix_tokens FROM requests ORDER BY line_number")
    let groups = rows.map { $0[1] }
    #expect(Set(groups.prefix(4)).count == 1 && !groups[0].isEmpty, "\(rows)")
    #expect(groups[4] != groups[0] && groups[5] != groups[4])
    #expect((Int(rows[0][2]) ?? 0) > 1_000 && (Int(rows[4][2]) ?? 0) < 50)
    // The body is stored byte for byte as the line had it (spacing and key order kept), so a cache sees the same bytes.
    let body = try query(database, "SELECT b.body FROM request_bodies b JOIN requests r ON r.id = b.request_id WHERE r.custom_id = 't0'")[0][0]
    #expect(body.hasPrefix(#"{"model": "gpt-5-mini",  "max_tokens": 20,"#), "\(body.prefix(60))")
}
