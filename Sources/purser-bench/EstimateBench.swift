import Foundation
import PurserCore
import PurserSQLite

/// How far Purser's input estimate falls from what providers count, before and after calibration, on a mixed sample:
/// generated lines of all three shapes, each sent (translated where needed) to a model of every provider in turn. The
/// providers' counts are the simulator's (`Simulator.reportedInputTokens`: its assumed tokenizer share per provider,
/// give or take 6% per request), not real tokenizers, which this machine cannot reach. Calibration learns each
/// provider's share from the even-numbered requests and is measured on the odd-numbered ones.
enum EstimateBench {
    struct Figures {
        var requests: Int
        /// Lines whose body the chosen model's dialect could not carry, left out of the sample.
        var untranslatable: Int
        /// Mean of each request's |estimate − count| / count, and |Σ estimate − Σ count| / Σ count per provider,
        /// weighted by count, in basis points.
        var meanErrorBefore: Int64, meanErrorAfter: Int64
        var sumErrorBefore: Int64, sumErrorAfter: Int64
        var scales: [String: Int64]
    }

    static func run(lines count: Int, catalog: PricingCatalog, now: Int64) throws -> Figures {
        var generator = JobFileGenerator(seed: 7, shapes: .mixed)
        var parser = RequestLineParser(catalog: catalog, defaults: .init(), submittedAt: now, history: OutputHistory())
        let served = catalog.models.filter { model in catalog.providers[model.provider].map { $0.name != "local" } ?? false }
        var samples: [(provider: String, estimate: Int64, reported: Int64)] = []
        var untranslatable = 0
        for index in 0..<count {
            var line = generator.line(index)
            let parsed = line.withUTF8 { parser.parse($0, lineNumber: index + 1) }
            guard case .success(let draft) = parsed else { continue }
            let model = served[index % served.count]
            guard let provider = catalog.providers[model.provider] else { continue }
            let body: JSONObject
            do {
                body = try DialectTranslation.requestBody(stored: draft.body, storedDialect: draft.shape.bodyDialect, model: model, provider: provider, mode: .sync)
            } catch {
                // A body the model's dialect cannot carry is left out of the sample, and counted.
                untranslatable += 1
                continue
            }
            let reported = Simulator.reportedInputTokens(of: body, model: model, provider: provider, requestID: Int64(index))
            samples.append((provider.name, Int64(draft.needs.inputTokens), Int64(reported)))
        }
        var calibration = InputCalibration()
        for sample in samples.enumerated() where sample.offset % 2 == 0 {
            var family = calibration.byProvider[sample.element.provider] ?? InputCalibration.Family(results: 0, estimatedTokens: 0, reportedTokens: 0)
            family.results += 1
            family.estimatedTokens += sample.element.estimate
            family.reportedTokens += sample.element.reported
            calibration.byProvider[sample.element.provider] = family
        }
        let held = samples.enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
        func errors(_ estimate: (String, Int64) -> Int64) -> (mean: Int64, sums: Int64) {
            var perRequest: Int64 = 0
            var sums: [String: (estimate: Int64, reported: Int64)] = [:]
            for sample in held {
                let estimated = estimate(sample.provider, sample.estimate)
                perRequest += abs(estimated - sample.reported) * 10_000 / sample.reported
                sums[sample.provider, default: (0, 0)].estimate += estimated
                sums[sample.provider, default: (0, 0)].reported += sample.reported
            }
            let reported = sums.values.reduce(0) { $0 + $1.reported }
            let sumError = sums.values.reduce(0) { $0 + abs($1.estimate - $1.reported) }
            return (perRequest / Int64(max(held.count, 1)), sumError * 10_000 / max(reported, 1))
        }
        let before = errors { _, estimate in estimate }
        let after = errors { provider, estimate in (estimate * calibration.scaleBasisPoints(provider: provider) + 5_000) / 10_000 }
        return Figures(
            requests: held.count, untranslatable: untranslatable, meanErrorBefore: before.mean, meanErrorAfter: after.mean, sumErrorBefore: before.sums, sumErrorAfter: after.sums,
            scales: Dictionary(uniqueKeysWithValues: calibration.byProvider.keys.map { ($0, calibration.scaleBasisPoints(provider: $0)) }))
    }
}
