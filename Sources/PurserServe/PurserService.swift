import Foundation
import PurserCore
import Synchronization

/// `purser serve`'s HTTP side: the OpenAI Files and Batches API, the Anthropic Message Batches API, Purser's own
/// budgets, report, metrics and dashboard, all on one port, and the keeper that turns new batches into jobs and
/// finished jobs into output files. The run service (the dispatcher) runs beside it and serves the jobs.
public final class PurserService: Sendable {
    let server: HTTPServer
    let keeper: BatchKeeper
    public var host: String { server.host }
    public var port: UInt16 { server.port }

    /// Binds `host:port` (0: a free port), opens the database (creating it when missing) and starts answering.
    /// `live` gives the run service's figures; `log` gets the service's own log lines (never a key).
    public init(
        databasePath: String, catalog: PricingCatalog, clock: WallClock, host: String, port: UInt16, limits: HTTPLimits = HTTPLimits(),
        live: @escaping @Sendable () -> LiveFigures, log: @escaping @Sendable (String) -> Void
    ) throws {
        // The port first: a serve that cannot listen opens (and makes) no database.
        let made = Mutex<ServiceContext?>(nil)
        let serverBox = Mutex<HTTPServer?>(nil)
        let wildcard = host == "0.0.0.0"
        let server = try HTTPServer(host: host, port: port, limits: limits) { bound in
            let context = try ServiceContext(databasePath: databasePath, catalog: catalog, clock: clock)
            // results_url names this server: by its listening address, or, listening on every interface, by the name
            // the client reached it by (the Host header, when it is a plain host and port).
            let origin = "http://\(wildcard ? "127.0.0.1" : host):\(bound)"
            let router = ServiceRouter(context: context, origin: { hostHeader in
                if wildcard, let hostHeader, PurserService.isPlainHost(hostHeader) { return "http://\(hostHeader)" }
                return origin
            }, live: {
                var figures = live()
                if let load = serverBox.withLock({ $0?.load }) { (figures.connections, figures.exchanges) = (load.connections, load.exchanges) }
                return figures
            }, log: log)
            made.withLock { $0 = context }
            return router
        }
        serverBox.withLock { $0 = server }
        self.server = server
        keeper = BatchKeeper(context: made.withLock { $0! }, log: log)
        keeper.start()
    }

    /// A Host header fit to put in a URL: a name or address and a port, nothing else.
    static func isPlainHost(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 255
            && text.utf8.allSatisfy { $0.isASCIIAlphanumeric || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "]") }
    }

    /// Stops accepting, lets HTTP exchanges in flight finish (up to `seconds`), and stops the keeper after its step.
    public func stop(waitingUpTo seconds: Double = 30) {
        server.stop(waitingUpTo: seconds)
        keeper.stop()
    }
}
