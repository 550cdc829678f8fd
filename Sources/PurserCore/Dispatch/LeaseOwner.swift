import Foundation

/// Who holds a lease: a run's host, process and the moment its process started, so a run on the same host
/// can tell at once whether the holder is gone (its process exited, or its pid now belongs to another
/// process) instead of waiting for the lease to lapse. Written into `lease_owner` as
/// `host:pid:start:nonce`; the nonce tells apart runs inside one process.
public struct LeaseOwner: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var pid: Int32
    /// The process's start, in clock ticks after boot (`/proc/PID/stat`), or 0 when unknown.
    public var start: UInt64
    public var nonce: UInt32

    public init(host: String, pid: Int32, start: UInt64, nonce: UInt32) {
        self.host = host
        self.pid = pid
        self.start = start
        self.nonce = nonce
    }

    public static func current() -> LeaseOwner {
        let pid = getpid()
        return LeaseOwner(host: hostName, pid: pid, start: processStart(pid) ?? 0, nonce: UInt32.random(in: 0...UInt32.max))
    }

    /// Host names never hold a colon here, so the text splits back cleanly.
    static let hostName = ProcessInfo.processInfo.hostName.replacingOccurrences(of: ":", with: "_")

    public var description: String { "\(host):\(pid):\(start):\(nonce)" }

    /// Reads an owner back; nil for text written some other way (an older purser's lease).
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 4, let pid = Int32(parts[1]), let start = UInt64(parts[2]), let nonce = UInt32(parts[3]) else { return nil }
        self.init(host: String(parts[0]), pid: pid, start: start, nonce: nonce)
    }

    /// True when the owner ran on this host and its process is no longer there. Only a sure answer says gone:
    /// a process that exists but whose start cannot be read (another user's, say) is taken to be the owner.
    public var isGoneFromThisHost: Bool {
        guard host == LeaseOwner.hostName, pid > 0 else { return false }
        if kill(pid, 0) != 0 && errno == ESRCH { return true }
        // The pid is in use: by the owner, unless that process started at another moment.
        guard let start = LeaseOwner.processStart(pid) else { return false }
        return self.start != 0 && start != self.start
    }

    /// The start time of a process, from field 22 of `/proc/PID/stat`; nil when it cannot be read.
    static func processStart(_ pid: Int32) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name (which may hold spaces) start at field 3.
        let fields = text[text.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }
}
