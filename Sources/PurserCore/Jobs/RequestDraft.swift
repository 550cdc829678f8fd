/// How a line was written.
public enum RequestShape: String, Sendable {
    case openaiBatch = "openai"
    case anthropicBatch = "anthropic"
    case minimal

    /// The dialect of the stored body: minimal lines are stored as OpenAI chat bodies.
    public var bodyDialect: Provider.Dialect { self == .anthropicBatch ? .anthropic : .openai }
}

/// A request read from a job file and checked, ready to store.
public struct RequestDraft: Sendable {
    public var lineNumber: Int
    public var customID: String
    public var shape: RequestShape
    /// The chat body as JSON text: the line's own `body`/`params` bytes, untouched.
    public var body: String
    public var referenceModel: String?
    public var needs: RequestNeeds
    public var deadlineAt: Int64
    public var maxCost: Money?
    public var tags: String?
    /// The request's prefix group (its leading content's hash; see `PromptPrefix`) and that content's estimated tokens.
    public var prefixGroup: String?
    public var prefixTokens = 0
}

/// Why one line of a job file was not accepted.
public struct LineProblem: Error, Sendable, Hashable, CustomStringConvertible {
    public var lineNumber: Int
    public var customID: String?
    public var message: String

    public init(lineNumber: Int, customID: String?, message: String) {
        self.lineNumber = lineNumber
        self.customID = customID
        self.message = message
    }

    public var description: String {
        "line \(lineNumber)" + (customID.map { " (custom_id \(LineProblem.shown($0)))" } ?? "") + ": " + message
    }

    /// A custom_id as messages show it: quoted, and cut after 64 characters so a huge one cannot flood the screen.
    static func shown(_ customID: String) -> String { JSONWriter.quotedForMessage(customID) }

    static func oversized(lineNumber: Int, byteCount: Int, limit: Int) -> LineProblem {
        LineProblem(
            lineNumber: lineNumber, customID: nil,
            message: "line is \(byteCount) bytes, over the \(limit)-byte limit; shorten it or raise --max-line-bytes")
    }

    package static func duplicate(customID: String, lineNumber: Int, firstLine: Int) -> LineProblem {
        LineProblem(
            lineNumber: lineNumber, customID: customID,
            message: "duplicate custom_id (first used on line \(firstLine)); custom_id must be unique in a job")
    }

    /// `FILE:LINE: custom_id "x": message`, the way compilers point at a line.
    public func located(in file: String) -> String {
        "\(file):\(lineNumber): " + (customID.map { "custom_id \(LineProblem.shown($0)): " } ?? "") + message
    }
}
