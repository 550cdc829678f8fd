#include <sqlite3.h>

/// `sqlite3_config` takes variable arguments, which Swift cannot pass: the process's one setting, made before its first
/// connection. A statement's journal (kept by a statement that changes many rows, to undo itself alone) is held in memory
/// up to `bytes`, where SQLite's default writes one over 64 KiB to a temporary file it makes and deletes.
static inline int purser_sqlite_set_statement_journal_spill(int bytes) {
    return sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, bytes);
}
