import Foundation

/// Where a command writes: data to standard output, messages to standard error.
/// Tests pass a capturing console; the executable passes the real streams.
public final class Console: @unchecked Sendable {
    private let writeOut: (String) -> Void
    private let writeError: (String) -> Void
    public let isTerminal: Bool

    public init(out: @escaping (String) -> Void, error: @escaping (String) -> Void, isTerminal: Bool = false) {
        self.writeOut = out
        self.writeError = error
        self.isTerminal = isTerminal
    }

    public static func standard() -> Console {
        Console(
            out: { text in FileHandle.standardOutput.write(Data(text.utf8)) },
            error: { text in FileHandle.standardError.write(Data(text.utf8)) },
            isTerminal: isatty(STDOUT_FILENO) == 1)
    }

    func print(_ text: String = "") { writeOut(text + "\n") }
    func error(_ text: String) { writeError(text + "\n") }
    /// Writes to standard error without a newline, for a live line redrawn with `\r`.
    func errorInline(_ text: String) { writeError(text) }
}

/// Columns of text, padded; numbers right-aligned.
struct TextTable {
    var headers: [String]
    var rows: [[String]] = []
    var rightAligned: Set<Int> = []

    func render() -> String {
        let widths = headers.indices.map { column in ([headers[column]] + rows.map { $0[column] }).map(\.count).max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { column, cell in
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                return rightAligned.contains(column) ? padding + cell : cell + padding
            }.joined(separator: "  ").trimmingTrailingSpaces()
        }
        return ([line(headers)] + rows.map(line)).joined(separator: "\n")
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var copy = self
        while copy.last == " " { copy.removeLast() }
        return copy
    }
}
