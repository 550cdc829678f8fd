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
        let reader = try JobFileReader(path: file, maximumLineBytes: maximumLineBytes)
        var parser = RequestLineParser(catalog: catalog, defaults: defaults, submittedAt: submittedAt, history: history)
        var scan = JobFileScan(requests: [], problems: [], badLines: 0)
        var firstLineOfCustomID: [String: Int] = [:]
        func reject(_ problem: LineProblem) {
            scan.badLines += 1
            if scan.problems.count < listedProblemLimit { scan.problems.append(problem) }
        }
        while let line = try reader.nextLine() {
            switch line {
            case .oversized(let lineNumber, let byteCount):
                reject(LineProblem(lineNumber: lineNumber, customID: nil, message: "line is \(byteCount) bytes, over the \(maximumLineBytes)-byte limit"))
            case .text(let lineNumber, let bytes):
                switch parser.parse(bytes, lineNumber: lineNumber) {
                case .failure(let problem):
                    reject(problem)
                case .success(let draft):
                    if let first = firstLineOfCustomID[draft.customID] {
                        reject(.duplicate(customID: draft.customID, lineNumber: lineNumber, firstLine: first))
                        continue
                    }
                    firstLineOfCustomID[draft.customID] = lineNumber
                    scan.requests.append(PlannableRequest(
                        id: Int64(lineNumber), needs: draft.needs, referenceModel: draft.referenceModel,
                        deadlineAt: draft.deadlineAt, maxCost: draft.maxCost))
                }
            }
        }
        return scan
    }
}
