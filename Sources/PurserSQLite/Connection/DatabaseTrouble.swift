import SQLiteStore

/// What a SQLite failure means to a user, and what to do about it; the code is kept at the end for support.
public enum DatabaseTrouble {
    /// Nil when the error is not the database's.
    public static func words(for error: any Error) -> String? {
        guard let error = error as? SQLiteError else { return nil }
        let advice: String
        switch error.primaryCode {
        case 5, 6: advice = "the database is busy: another purser kept it locked for more than 10 seconds; try again"
        case 8: advice = "the database or its folder is read-only; run where it can be written, or pass --db PATH"
        case 10: advice = "the disk failed to read or write the database; check the disk and its free space"
        case 11: advice = "the database file is damaged; restore it from a backup"
        case 13: advice = "the disk is full; free some space and run the command again (this command stored nothing)"
        case 14: advice = "cannot open the database file; check the path and the permissions of its folder"
        case 26: advice = "the file is not a Purser database; pass --db PATH to the right one"
        default: return "\(error.message) (SQLite \(error.code))"
        }
        return "\(advice) (SQLite \(error.code): \(error.message))"
    }
}
