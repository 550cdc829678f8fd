/// A job file read and checked without storing it, for `purser estimate`.
public struct JobFileScan: Sendable {
    public var requests: [PlannableRequest]
    /// The first bad lines, up to the listing limit.
    public var problems: [LineProblem]
    public var badLines: Int

    public static func read(
        file: String, catalog: PricingCatalog, defaults: RequestLineParser.Defaults, submittedAt: Int64, history: OutputHistory,
        maximumLineBytes: Int = 1 << 20, listedProblemLimit: Int = 20
    ) throws -> JobFileScan {
        let stream = try ParsedLineStream(file: file, maximumLineBytes: maximumLineBytes) {
            RequestLineParser(catalog: catalog, defaults: defaults, submittedAt: submittedAt, history: history)
        }
        var scan = JobFileScan(requests: [], problems: [], badLines: 0)
        var firstLineOfCustomID: [String: Int] = [:]
        func reject(_ problem: LineProblem) {
            scan.badLines += 1
            if scan.problems.count < listedProblemLimit { scan.problems.append(problem) }
        }
        while true {
            switch stream.next() {
            case .batch(let items):
                for item in items {
                    switch item {
                    case .problem(let problem):
                        reject(problem)
                    case .request(let draft):
                        if let first = firstLineOfCustomID[draft.customID] {
                            reject(.duplicate(customID: draft.customID, lineNumber: draft.lineNumber, firstLine: first))
                            continue
                        }
                        firstLineOfCustomID[draft.customID] = draft.lineNumber
                        scan.requests.append(PlannableRequest(
                            id: Int64(draft.lineNumber), needs: draft.needs, referenceModel: draft.referenceModel, deadlineAt: draft.deadlineAt,
                            maxCost: draft.maxCost, prefix: draft.prefixGroup.flatMap { SharedPrefix(id: $0, tokens: draft.prefixTokens) }))
                    }
                }
            case .finished:
                return scan
            case .failed(let message):
                throw Problem(message)
            }
        }
    }
}
