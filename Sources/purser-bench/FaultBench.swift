import Foundation
import PurserCore
import PurserSQLite
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The fault figures: Purser serving requests from a server that fails some of its calls, beside a plain
/// retrying URLSession loop on a server with the same faults, and a run against an endpoint nobody listens on.
enum FaultBench {
    /// A server's faults, and the time both clients give a call before they abandon it and send it again.
    struct Mix {
        var name: String
        var flags: [String]
        var timeoutSeconds: Double
    }

    /// 10% HTTP 500, 5% HTTP 429 with Retry-After: 1: ordinary bad weather for a provider (issue 10's mix); then
    /// the spec's, which adds 2% of calls that never answer (abandoned after 5 s) and 1% malformed bodies.
    static let mixes = [
        Mix(name: "5xx and 429", flags: ["--fail-5xx", "0.10", "--fail-429", "0.05", "--retry-after", "1", "--seed", "11"], timeoutSeconds: 60),
        Mix(
            name: "5xx, 429, timeouts and malformed bodies",
            flags: ["--fail-5xx", "0.10", "--fail-429", "0.05", "--retry-after", "1", "--hang", "0.02", "--hang-seconds", "30", "--malformed", "0.01",
                "--seed", "11"],
            timeoutSeconds: 5),
    ]
    static let latencyMilliseconds = 50

    struct LoopFigures {
        var seconds: Double
        var succeeded: Int
        var calls: Int
    }

    /// The client anyone would write first: `concurrency` requests at a time, each sent again at once after a
    /// 5xx, a network error, a timeout or a body without choices, and after the Retry-After it was given on a 429,
    /// until it succeeds.
    static func plainRetryingLoop(port: Int, calls: Int, concurrency: Int, timeoutSeconds: Double) -> LoopFigures {
        let session = DispatchBench.plainSession(concurrency: concurrency, timeoutSeconds: timeoutSeconds)
        let slots = DispatchSemaphore(value: concurrency)
        let group = DispatchGroup()
        let counts = Counts()

        @Sendable func attempt(_ index: Int) {
            // Named as Purser names its calls (the request's id in a fresh database: 1, 2, ...), so that both
            // clients meet the same faults: the fake draws each call's fault from its request's name and try.
            let request = DispatchBench.chatRequest(port: port, index: index, name: String(index + 1))
            counts.call()
            session.dataTask(with: request) { data, response, _ in
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                if status == 200, let data, String(decoding: data, as: UTF8.self).contains("\"choices\"") {
                    counts.success()
                    slots.signal()
                    group.leave()
                    return
                }
                let wait = status == 429
                    ? Double((response as? HTTPURLResponse)?.value(forHTTPHeaderField: "Retry-After") ?? "1") ?? 1 : 0
                DispatchQueue.global().asyncAfter(deadline: .now() + wait) { attempt(index) }
            }.resume()
        }

        let started = DispatchTime.now().uptimeNanoseconds
        for index in 0..<calls {
            slots.wait()
            group.enter()
            attempt(index)
        }
        group.wait()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        session.finishTasksAndInvalidate()
        return LoopFigures(seconds: seconds, succeeded: counts.succeeded, calls: counts.calls)
    }

    private final class Counts: @unchecked Sendable {
        private let lock = NSLock()
        private var successes = 0, attempts = 0
        func success() { lock.withLock { successes += 1 } }
        func call() { lock.withLock { attempts += 1 } }
        var succeeded: Int { lock.withLock { successes } }
        var calls: Int { lock.withLock { attempts } }
    }

    /// What a server saw of one run: calls, calls made before their Retry-After, and requests answered twice.
    struct ServerFigures {
        var calls: Int
        var earlyRetries: Int
        var answeredTwice: Int
        var answered: Int
    }

    static func serverFigures(_ server: DispatchBench.FakeServer) -> ServerFigures {
        let stats = server.stats()
        let successes = stats?["successes"]?.objectValue?.members.map { $0.value.intValue ?? 0 } ?? []
        return ServerFigures(
            calls: server.stat("calls"), earlyRetries: server.stat("early_retries"), answeredTwice: successes.filter { $0 > 1 }.count,
            answered: successes.count)
    }

    /// A port nothing listens on: one the kernel gave a socket that was then closed.
    static func closedPort() -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
