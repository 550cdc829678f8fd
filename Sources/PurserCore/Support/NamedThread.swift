import Foundation

extension Thread {
    /// A thread that runs `body` under `name` as the system shows it (`top -H`, `perf`, `/proc/PID/task/*/comm`), cut
    /// to Linux's 15 bytes. Foundation's `Thread.name` on Linux names the thread for Foundation only, so every thread
    /// showed as the one that made it (`oot.default-qos`, a pool thread's name). The name is written where Linux keeps
    /// it (`/proc/thread-self/comm`), as `pthread_setname_np` does; a system without it leaves the thread unnamed.
    public static func named(_ name: String, _ body: @escaping @Sendable () -> Void) -> Thread {
        let shown = Array(name.utf8.prefix(15))
        let thread = Thread {
            let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
            if comm >= 0 {
                _ = shown.withUnsafeBytes { write(comm, $0.baseAddress, $0.count) }
                close(comm)
            }
            body()
        }
        thread.name = name
        return thread
    }
}
