import PurserCore
import PurserSQLite

/// `purser estimate FILE`: plans a file without storing anything.
enum EstimateCommand {
    static let spec = CommandSpec(
        name: "estimate",
        overview: "Plan a job file without submitting it: the mix, the estimated cost and the saving.",
        arguments: [.init(name: "file", help: "A job file; - reads standard input.")],
        options: [
            SubmitCommand.Options.quality.option, SubmitCommand.Options.deadline.option,
            SubmitCommand.Options.onlyProviders.option, SubmitCommand.Options.ignoreProviders.option,
            SharedOptions.simulate.option, SharedOptions.pricing.option, SharedOptions.json.option,
        ])

    static func run(_ arguments: ParsedArguments, context: CommandContext) throws -> Int32 {
        let catalog = try context.loadCatalog(arguments)
        let now = context.clock.now()
        let options = try SubmitCommand.options(arguments, catalog: catalog, now: now)
        let file = arguments.positionals[0]
        let scan = try JobFileScan.read(
            file: file, catalog: catalog, defaults: .init(quality: options.quality, deadline: options.deadline, providers: options.providers), submittedAt: now,
            history: OutputHistory())
        for problem in scan.problems { context.console.error(problem.located(in: file)) }
        if scan.badLines > 0 {
            context.console.error("warning: \(count(scan.badLines, "bad line")) left out of the estimate; submit would reject the file unless --skip-invalid")
        }
        let planner = Planner(context: PlanCommand.planningContext(catalog: catalog, arguments: arguments, context: context))
        PlanOutput.summary(planner.plan(scan.requests), title: file, catalog: catalog, arguments: arguments, context: context)
        return 0
    }
}
