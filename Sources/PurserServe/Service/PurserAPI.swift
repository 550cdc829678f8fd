import Foundation
import PurserCore
import PurserSQLite
import Synchronization

/// What the run service and the HTTP server are doing now, for the metrics and the dashboard.
public struct LiveFigures: Sendable {
    public var inFlight = 0
    public var retried = 0
    public var fellBack = 0
    public var slowDowns = 0
    public var connections = 0
    public var exchanges = 0
    public var simulated = false

    public init() {}
}

/// Purser's own endpoints: budgets and the spending report for admin keys, Prometheus metrics, and the dashboard
/// (a login that sets a session cookie, the page, and the figures it polls).
struct PurserAPI {
    let context: ServiceContext
    let live: @Sendable () -> LiveFigures
    private let sessions = Sessions()

    init(context: ServiceContext, live: @escaping @Sendable () -> LiveFigures) {
        self.context = context
        self.live = live
    }

    func route(_ request: HTTPRequest, _ body: HTTPBody, key: ProjectKey) throws -> HTTPResponse {
        let parts = request.segments  // ["v1", "purser", ...]
        switch (request.method, parts.count > 2 ? parts[2] : "") {
        case ("GET", "budgets"): return .json(200, JSONWriter.string(try budgets(key: try admin(key))))
        case ("PUT", "budgets"): return try setBudget(body, key: try admin(key))
        case ("GET", "report"): return try report(request, key: try admin(key))
        case ("GET", "dashboard"): return .json(200, JSONWriter.string(try dashboard(key: key)))
        default: throw APIError(status: 404, type: "invalid_request_error", message: "Unknown request URL: \(request.method) \(request.path)", code: "unknown_url")
        }
    }

    private func admin(_ key: ProjectKey) throws -> ProjectKey {
        guard key.role.isAdmin else { throw APIError.forbidden("Budgets and reports need an admin key of the project (purser keys create --project P --role admin).") }
        return key
    }

    private var month: BudgetMonth { BudgetMonth(containing: context.now()) }

    // MARK: - Budgets and the report

    private func budgets(key: ProjectKey) throws -> JSONValue {
        let month = self.month
        return try context.withStore { store in
            func ledger(_ simulated: Bool) throws -> JSONValue {
                guard let use = try store.ledger.use(project: key.project, month: month, simulated: simulated) else { return .null }
                return .object(JSONObject(use.jsonMembers))
            }
            let budgets = try store.ledger.budgets().filter { $0.project == key.project }
            return .object(JSONObject([
                "project": .string(key.project), "month": .string(month.description),
                "cap": try ledger(false), "simulated_cap": try ledger(true),
                "budgets": .array(budgets.map { budget in
                    .object(JSONObject([
                        "month": budget.month.map { .string($0.description) } ?? .string("every"), "cap_usd": .string(budget.cap.exactUSD),
                        "warn_percent": .number(String(budget.warnPercent)),
                    ]))
                }),
            ]))
        }
    }

    private func setBudget(_ body: HTTPBody, key: ProjectKey) throws -> HTTPResponse {
        let fields = try OpenAIAPI.jsonObject(body)
        guard let amount = fields["usd"], case .success(let cap) = RoutingText.usd(amount, field: "usd") else {
            throw APIError.invalid("usd must be an amount of US dollars, such as \"250\" or \"12.50\".", param: "usd")
        }
        var month: BudgetMonth?
        if let text = fields["month"]?.stringValue {
            guard let parsed = BudgetMonth(text) else { throw APIError.invalid("month must be yyyy-mm, such as 2026-12.", param: "month") }
            month = parsed
        }
        var warn: Int?
        if let value = fields["warn_percent"] {
            guard let percent = value.intValue, (1...100).contains(percent) else { throw APIError.invalid("warn_percent must be a whole number from 1 to 100.", param: "warn_percent") }
            warn = percent
        }
        _ = try context.withStore { try $0.ledger.setBudget(cap, project: key.project, month: month, warnPercent: warn, now: context.now()) }
        return .json(200, JSONWriter.string(try budgets(key: key)))
    }

    private func report(_ request: HTTPRequest, key: ProjectKey) throws -> HTTPResponse {
        let grouping = try request.query["by"].map { text -> ReportQuery.Grouping in
            guard let grouping = ReportQuery.Grouping(rawValue: text) else {
                throw APIError.invalid("by must be one of \(ReportQuery.Grouping.allCases.map(\.rawValue).joined(separator: ", ")).", param: "by")
            }
            return grouping
        } ?? .model
        var month: BudgetMonth? = self.month
        if let text = request.query["month"] {
            if text == "all" { month = nil } else {
                guard let parsed = BudgetMonth(text) else { throw APIError.invalid("month must be yyyy-mm or all.", param: "month") }
                month = parsed
            }
        }
        let simulated = request.query["simulated"] == "true"
        let report = try context.withStore {
            try $0.reports.report(ReportQuery(month: month, project: key.project, grouping: grouping, simulated: simulated), now: context.now())
        }
        return .json(200, JSONWriter.string(report.json()))
    }

    // MARK: - Metrics

    func metrics(key _: ProjectKey) throws -> HTTPResponse {
        let figures = live()
        let month = self.month
        var text = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: String, value: String)]) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for sample in samples { text += "\(name)\(sample.labels.isEmpty ? "" : "{\(sample.labels)}") \(sample.value)\n" }
        }
        func label(_ value: String) -> String {
            value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
        }
        let (states, money, batches) = try context.withStore { store in
            (try store.service.requestStates(), try store.service.moneyByProject(month: month), try store.service.batchCounts())
        }
        family("purser_requests", "gauge", "Requests by state, in every job.", states.map { ("state=\"\(label($0.state))\"", String($0.count)) })
        family("purser_spend_usd", "gauge", "Charges this month (UTC) by project and ledger.",
            money.map { ("project=\"\(label($0.project))\",simulated=\"\($0.simulated)\"", $0.charged.exactUSD) })
        family("purser_reserved_usd", "gauge", "Money reserved for calls in flight, by project and ledger.",
            money.map { ("project=\"\(label($0.project))\",simulated=\"\($0.simulated)\"", $0.reserved.exactUSD) })
        family("purser_calls_in_flight", "gauge", "Calls this serve's run service has in flight.", [("", String(figures.inFlight))])
        family("purser_retries_total", "counter", "Calls retried by this serve's run service.", [("", String(figures.retried))])
        family("purser_fallbacks_total", "counter", "Requests moved to another model by this serve's run service.", [("", String(figures.fellBack))])
        family("purser_rate_limit_slowdowns_total", "counter", "429 answers that slowed a model down.", [("", String(figures.slowDowns))])
        family("purser_batches", "gauge", "Batches created through the service, by API and status.",
            batches.map { ("api=\"\($0.dialect)\",status=\"\($0.status)\"", String($0.count)) })
        family("purser_http_connections", "gauge", "HTTP connections open.", [("", String(figures.connections))])
        family("purser_http_exchanges", "gauge", "HTTP requests being answered.", [("", String(figures.exchanges))])
        return .text(200, text, type: "text/plain; version=0.0.4; charset=utf-8")
    }

    // MARK: - Dashboard

    func dashboardRoute(_ request: HTTPRequest, _ body: HTTPBody) throws -> HTTPResponse {
        switch (request.method, request.path) {
        case ("GET", "/"):
            guard try sessionKey(request) != nil else { return .text(200, DashboardPage.login(message: nil), type: "text/html; charset=utf-8", headers: DashboardPage.headers) }
            return .text(200, DashboardPage.page, type: "text/html; charset=utf-8", headers: DashboardPage.headers)
        case ("POST", "/login"):
            let form = String(decoding: try body.readAll(), as: UTF8.self)
            let fields = Dictionary(form.split(separator: "&").compactMap { pair -> (String, String)? in
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2 else { return nil }
                return (String(parts[0]), String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "")
            }, uniquingKeysWith: { first, _ in first })
            let token = ProjectToken(text: (fields["key"] ?? "").trimmingCharacters(in: .whitespaces))
            guard let key = try context.withStore({ try $0.service.key(for: token) }) else {
                return .text(401, DashboardPage.login(message: "That key is not a live project key."), type: "text/html; charset=utf-8", headers: DashboardPage.headers)
            }
            let session = sessions.open(key: key.id, now: context.now())
            return HTTPResponse(status: 303, headers: [
                ("Location", "/"), ("Set-Cookie", "purser_session=\(session); HttpOnly; SameSite=Strict; Path=/; Max-Age=\(Sessions.lifetimeSeconds)"),
            ] + DashboardPage.headers)
        case ("POST", "/logout"):
            if let session = request.cookie("purser_session") { sessions.close(session) }
            return HTTPResponse(status: 303, headers: [("Location", "/"), ("Set-Cookie", "purser_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")])
        case ("GET", "/dashboard.json"):
            guard let key = try sessionKey(request) else { throw APIError.unauthenticated }
            return .json(200, JSONWriter.string(try dashboard(key: key)), headers: [("Cache-Control", "no-store")])
        default:
            throw APIError(status: 404, type: "invalid_request_error", message: "Unknown request URL: \(request.method) \(request.path)", code: "unknown_url")
        }
    }

    /// The key behind the request's session cookie, while the session lasts and the key is not revoked.
    private func sessionKey(_ request: HTTPRequest) throws -> ProjectKey? {
        guard let session = request.cookie("purser_session"), let id = sessions.key(session, now: context.now()) else { return nil }
        return try context.withStore { try $0.service.liveKey(id: id) }
    }

    /// Everything the dashboard shows for the key's project: its jobs with progress and ETA, this month's spend
    /// against the cap (the same figures as `purser report`), savings, spend by model and provider, open
    /// provider batches, recent failures, and the run service's live figures.
    func dashboard(key: ProjectKey) throws -> JSONValue {
        let now = context.now()
        let month = self.month
        let figures = live()
        return try context.withStore { store in
            let ids = try store.service.jobs(project: key.project, limit: 50)
            var openBatches: [JSONValue] = []
            let jobs: [JSONValue] = try ids.compactMap { id in
                guard let job = try store.jobs.job(id: id) else { return nil }
                let counts = try store.jobs.stateCounts(job: id)
                let total = counts.values.reduce(0, +)
                let done = counts.filter { $0.key.isFinished }.values.reduce(0, +)
                let totals = try store.jobs.planTotals(job: id)
                let spent = try store.results.spend(job: id).cost
                let elapsed = max(now - job.submittedAt, 1)
                // At the pace so far, in seconds (in floating point: a rough figure, and no product of counts can overflow).
                let eta: JSONValue = done > 0 && done < total
                    ? .number(String(Int64(min(Double(total - done) * Double(elapsed) / Double(done) / 1000, 1e12)))) : .null
                for batch in try store.jobs.openBatches(job: id) {
                    openBatches.append(.object(JSONObject([
                        "job": .number(String(id)), "provider": .string(batch.provider), "model": .string(batch.model), "requests": .number(String(batch.requests)),
                        "state": .string(batch.providerStatus ?? batch.state),
                        "age_seconds": batch.submittedAt.map { .number(String(max(now - $0, 0) / 1000)) } ?? .null,
                        "expected_end": batch.submittedAt.map { .string(BatchView.rfc3339($0 + Tiers.BatchTiming.windowMilliseconds)) } ?? .null,
                    ])))
                }
                return .object(JSONObject([
                    "id": .number(String(id)), "name": .string(job.name), "submitted_at": .string(BatchView.rfc3339(job.submittedAt)),
                    "total": .number(String(total)), "done": .number(String(done)),
                    "states": .object(JSONObject(RequestState.allCases.compactMap { state in counts[state].map { .init(key: state.rawValue, value: .number(String($0))) } })),
                    "eta_seconds": eta, "spent_usd": .string(spent.exactUSD), "estimated_usd": .string(totals.estimated.exactUSD),
                    "baseline_usd": .string(totals.baseline.exactUSD),
                ]))
            }
            func spending(simulated: Bool, by grouping: ReportQuery.Grouping) throws -> SpendReport {
                try store.reports.report(ReportQuery(month: month, project: key.project, grouping: grouping, simulated: simulated), now: now)
            }
            // The ledger the project's money is in: real, unless only rehearsals spent this month.
            let real = try spending(simulated: false, by: .model)
            let simulated = real.total.requests == 0 && figures.simulated
            let byModel = simulated ? try spending(simulated: true, by: .model) : real
            let byProvider = try spending(simulated: simulated, by: .provider)
            let cap = try store.ledger.use(project: key.project, month: month, simulated: simulated)
            func lines(_ report: SpendReport) -> JSONValue {
                .array(report.lines.map { line in
                    .object(JSONObject([
                        "key": .string(line.key), "requests": .number(String(line.requests)), "cost_usd": .string(line.cost.exactUSD),
                        "baseline_usd": .string(line.baseline.exactUSD), "savings_usd": .string(line.savings.exactUSD),
                    ]))
                })
            }
            let failures = try store.service.recentFailures(project: key.project, limit: 10)
            return .object(JSONObject([
                "project": .string(key.project), "role": .string(key.role.rawValue), "month": .string(month.description),
                "generated_at": .string(BatchView.rfc3339(now)), "simulated": .bool(simulated),
                "spend": .object(JSONObject([
                    "cost_usd": .string(byModel.total.cost.exactUSD), "baseline_usd": .string(byModel.total.baseline.exactUSD),
                    "savings_usd": .string(byModel.total.savings.exactUSD), "requests": .number(String(byModel.total.requests)),
                    "forecast_usd": byModel.forecast.map { .string($0.atMonthEnd.exactUSD) } ?? .null,
                ])),
                "cap": cap.map { .object(JSONObject($0.jsonMembers)) } ?? .null,
                "by_model": lines(byModel), "by_provider": lines(byProvider),
                "jobs": .array(jobs), "open_batches": .array(openBatches),
                "failures": .array(failures.map { failure in
                    .object(JSONObject([
                        "job": .number(String(failure.job)), "custom_id": .string(failure.customID), "state": .string(failure.state),
                        "reason": .string(String(failure.error.prefix(300))),
                    ]))
                }),
                "live": .object(JSONObject([
                    "calls_in_flight": .number(String(figures.inFlight)), "retries": .number(String(figures.retried)),
                    "slowdowns": .number(String(figures.slowDowns)),
                ])),
            ]))
        }
    }
}

/// Dashboard sessions, in memory: a random id per login, mapped to its key for 12 hours.
final class Sessions: Sendable {
    static let lifetimeSeconds: Int64 = 12 * 3600
    private let open = Mutex<[String: (key: Int64, until: Int64)]>([:])

    func open(key: Int64, now: Int64) -> String {
        var generator = SystemRandomNumberGenerator()
        let id = SHA256.hex(of: (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) })
        open.withLock { sessions in
            sessions = sessions.filter { $0.value.until > now }
            sessions[id] = (key, now + Sessions.lifetimeSeconds * 1000)
        }
        return id
    }

    func key(_ id: String, now: Int64) -> Int64? {
        open.withLock { sessions in sessions[id].flatMap { $0.until > now ? $0.key : nil } }
    }

    func close(_ id: String) { open.withLock { _ = $0.removeValue(forKey: id) } }
}
