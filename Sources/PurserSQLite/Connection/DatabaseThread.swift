import Foundation

/// The thread a store's database work runs on: the serial executor of the actor that owns a connection
/// (`DispatchStore`), a thread of its own rather than one of Swift's cooperative pool.
///
/// The pool has one thread per core and expects the jobs it runs never to block. A transaction holds its thread for
/// milliseconds (a group commit of a few hundred answers, a claim, the sync of a checkpoint), so on the pool it took
/// one of a 2-core machine's two threads from the workers for as long. On a thread of its own it leaves the pool to
/// the workers, and the kernel shares the cores between them. At 0 ms and 100 calls in flight, a run was faster this
/// way than on the pool in 17 of 20 alternating rounds, its median time 6% less.
///
/// The thread ends once the store that owns it is gone (`stop`).
final class DatabaseThread: SerialExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var jobs: [UnownedJob] = []
    private var stopped = false

    init(name: String) {
        // The thread holds the executor until it ends.
        let thread = Thread.named(name) { [self] in run() }
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Ends the thread once the jobs already queued have run: the store is gone, so no more come.
    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }

    private func run() {
        // The jobs are taken all at once and run outside the lock, while new ones gather in the other list.
        var taken: [UnownedJob] = []
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            swap(&taken, &jobs)
            condition.unlock()
            for job in taken { job.runSynchronously(on: asUnownedSerialExecutor()) }
            taken.removeAll(keepingCapacity: true)
        }
    }
}
