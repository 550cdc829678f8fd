import Foundation

/// The machine-readable forms of a report. Amounts are exact decimal strings, so a total read back
/// equals the sum of its lines to the last pico-dollar.
extension SpendReport {
    public var periodText: String { query.month.map { "\($0) (UTC)" } ?? "all time" }

    public func json() -> JSONValue {
        func lineMembers(_ line: Line, share: Int64) -> [JSONObject.Member] {
            [
                .init(key: "requests", value: .number(String(line.requests))), .init(key: "input_tokens", value: .number(String(line.inputTokens))),
                .init(key: "cached_tokens", value: .number(String(line.cachedTokens))),
                .init(key: "cache_write_tokens", value: .number(String(line.cacheWriteTokens))), .init(key: "output_tokens", value: .number(String(line.outputTokens))),
                .init(key: "cost_usd", value: .string(line.cost.exactUSD)), .init(key: "share_basis_points", value: .number(String(share))),
                .init(key: "baseline_usd", value: .string(line.baseline.exactUSD)), .init(key: "savings_usd", value: .string(line.savings.exactUSD)),
                .init(key: "cache_saving_usd", value: .string(line.cacheSaving.exactUSD)),
            ]
        }
        let shares = self.shares
        return .object(JSONObject([
            "month": query.month.map { .string($0.description) } ?? .null,
            "project": query.project.map { .string($0) } ?? .null,
            "job": query.job.map { .number(String($0)) } ?? .null,
            "by": .string(query.grouping.rawValue),
            "simulated": .bool(query.simulated),
            "generated_at": .string(Date(timeIntervalSince1970: Double(generatedAt / 1000)).formatted(.iso8601)),
            "lines": .array(lines.indices.map { index in
                .object(JSONObject([.init(key: query.grouping.rawValue, value: .string(lines[index].key))] + lineMembers(lines[index], share: shares[index])))
            }),
            "total": .object(JSONObject(lineMembers(total, share: lines.isEmpty ? 0 : 10_000))),
            "budgets": .array(caps.map { .object(JSONObject($0.jsonMembers)) }),
            "forecast": forecast.map { forecast in
                .object(JSONObject([
                    "spent_usd": .string(forecast.spentSoFar.exactUSD), "month_end_usd": .string(forecast.atMonthEnd.exactUSD),
                    "month_elapsed_basis_points": .number(String(forecast.elapsedBasisPoints)),
                    "days_with_spending": .number(String(forecast.daysWithSpending)), "little_to_go_on": .bool(forecast.hasLittleToGoOn),
                ]))
            } ?? .null,
            "unsettled": .object(JSONObject(["calls": .number(String(unsettled.calls)), "usd": .string(unsettled.amount.exactUSD)])),
            "input_calibration": .array(inputCalibration.byProvider.sorted { $0.key < $1.key }.map { provider, family in
                .object(JSONObject([
                    "provider": .string(provider), "results": .number(String(family.results)),
                    "estimated_input_tokens": .number(String(family.estimatedTokens)), "reported_input_tokens": .number(String(family.reportedTokens)),
                    "reported_basis_points": .number(String(family.scaleBasisPoints)),
                    "applied_basis_points": .number(String(inputCalibration.scaleBasisPoints(provider: provider))),
                ]))
            }),
            "daily": .array(daily.map { .object(JSONObject(["day": .string($0.day), "cost_usd": .string($0.cost.exactUSD)])) }),
        ]))
    }

    public static let csvColumns = ["requests", "input_tokens", "cached_tokens", "output_tokens", "cost_usd", "share_percent", "baseline_usd", "savings_usd"]

    /// One row per line and a last `total` row; exact amounts.
    public func csv() -> String {
        let shares = self.shares
        func row(_ line: Line, share: Int64) -> String {
            ([ResultFormat.csvText(line.key), String(line.requests), String(line.inputTokens), String(line.cachedTokens), String(line.outputTokens), line.cost.exactUSD,
              DecimalText.format(share, decimals: 2), line.baseline.exactUSD, line.savings.exactUSD]).map(ResultFormat.csvField).joined(separator: ",")
        }
        var text = ([query.grouping.rawValue] + SpendReport.csvColumns).joined(separator: ",") + "\n"
        for index in lines.indices { text += row(lines[index], share: shares[index]) + "\n" }
        text += row(total, share: lines.isEmpty ? 0 : 10_000) + "\n"
        return text
    }
}

extension CapUse {
    /// The cap, its scope and what counts against it, with exact amounts.
    public var jsonMembers: [JSONObject.Member] {
        var scope: [JSONObject.Member]
        switch self.scope {
        case .project(let project, let month): scope = [.init(key: "project", value: .string(project)), .init(key: "month", value: .string(month.description))]
        case .job(let id, let name): scope = [.init(key: "job", value: .number(String(id))), .init(key: "name", value: .string(name))]
        }
        return scope + [
            .init(key: "cap_usd", value: .string(cap.exactUSD)), .init(key: "charged_usd", value: .string(charged.exactUSD)),
            .init(key: "unsettled_usd", value: .string(unsettled.exactUSD)), .init(key: "reserved_usd", value: .string(reserved.exactUSD)), .init(key: "left_usd", value: .string(left.exactUSD)),
            .init(key: "used_basis_points", value: .number(String(usedBasisPoints))), .init(key: "warn_percent", value: .number(String(warnPercent))),
        ]
    }
}
