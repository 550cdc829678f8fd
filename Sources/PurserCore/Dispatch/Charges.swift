/// What a call costs from its reported usage, at the prices of the mode it ran in.
public enum Charges {
    /// Where the tables give no cache write price but a provider reports writes: Anthropic's 5-minute rate, 1.25× the
    /// input price (https://platform.claude.com/docs/en/build-with-claude/prompt-caching).
    static let cacheWriteBasisPoints: Int64 = 12_500

    /// A reported cache write at `prices`: the tables' 5-minute write price, else 1.25× input.
    static func cacheWrite(_ prices: TokenPrices) -> TokenPrice { prices.cacheWrite5m ?? prices.input.scaled(basisPoints: cacheWriteBasisPoints) }

    /// The dearest rate an input token can be billed at: an hour's cache write where the tables give one (a request may
    /// carry its own one-hour breakpoint), else a five-minute write, and never below a cached read.
    static func dearestInput(_ prices: TokenPrices) -> TokenPrice {
        max(prices.cacheWrite1h ?? cacheWrite(prices), cacheWrite(prices), prices.cachedInput)
    }

    /// The prices in force for `model` in `mode` at `moment` (epoch ms): flex prices on flex; otherwise list
    /// prices, discounted when the call falls inside one of the model's discount windows (providers bill
    /// by the time of the call, whatever was planned).
    public static func prices(of model: Model, mode: DispatchMode, at moment: Int64) -> TokenPrices {
        switch mode {
        case .flex: return model.flexPrices ?? model.prices
        case .batch: return model.batchPrices ?? model.prices
        case .sync, .offpeak:
            for window in model.discountWindows where !window.intervals(from: moment, to: moment + 1).isEmpty {
                return model.prices.scaled(basisPoints: window.multiplierBasisPoints)
            }
            return model.prices
        }
    }

    /// Input tokens are estimated at about four bytes each; a tokenizer can produce at most one token per
    /// byte, so four times the estimate bounds what a provider can report.
    static let inputBoundFactor = 4

    /// The most a call can cost: the input bound at the highest input rate (cache writes), plus
    /// `maxOutputTokens` and the model's reasoning room (what the call's output limit is) at the output rate, at the mode's
    /// prices and the highest of any discount window. This is what is reserved before the call, so a charge never exceeds
    /// its reservation.
    public static func worstCase(model: Model, mode: DispatchMode, inputTokens: Int, maxOutputTokens: Int) -> Money {
        var candidates: [TokenPrices]
        switch mode {
        case .flex: candidates = [model.flexPrices ?? model.prices]
        case .batch: candidates = [model.batchPrices ?? model.prices]
        case .sync, .offpeak: candidates = [model.prices] + model.discountWindows.map { model.prices.scaled(basisPoints: $0.multiplierBasisPoints) }
        }
        return candidates.map { prices in
            dearestInput(prices).cost(tokens: inputTokens * inputBoundFactor)
                + prices.output.cost(tokens: model.outputAllowance(maxOutputTokens))
        }.max() ?? .zero
    }

    /// What caching saved on `usage` at `prices`: reads at input price less reads at the cached price, less writes at
    /// their price beyond input.
    public static func cacheSaving(of usage: Usage, prices: TokenPrices) -> Money {
        prices.input.cost(tokens: usage.cachedInputTokens) - prices.cachedInput.cost(tokens: usage.cachedInputTokens)
            - (cacheWrite(prices).cost(tokens: usage.cacheWriteTokens) - prices.input.cost(tokens: usage.cacheWriteTokens))
    }

    public static func cost(of usage: Usage, prices: TokenPrices) -> Money {
        prices.input.cost(tokens: usage.inputTokens)
            + prices.cachedInput.cost(tokens: usage.cachedInputTokens)
            + cacheWrite(prices).cost(tokens: usage.cacheWriteTokens)
            + prices.output.cost(tokens: usage.outputTokens)
    }
}
