import Testing
@testable import PurserCore

/// `Admission` decides over the cap uses it is given, and nothing else: no store is needed to test the rule.
@Test func admissionReservesWhatFitsWaitsOnWhatFitsOnceCallsSettleAndHoldsWhatNeverFits() throws {
    let month = BudgetMonth(containing: 1_795_000_000_000)
    let cap = CapUse(scope: .job(7, name: "nightly"), cap: Money(picoUSD: 1_000), warnPercent: 80, charged: Money(picoUSD: 400), reserved: .zero)
    var admission = Admission(month: month, simulated: false, projectUses: ["default": nil], jobUses: [7: cap])

    #expect(try decision(admission.decide(amount: Money(picoUSD: 500), job: 7, project: "default")) == "reserve")
    // The reservation just made counts: 400 charged + 500 reserved leaves 100.
    #expect(try decision(admission.decide(amount: Money(picoUSD: 200), job: 7, project: "default")) == "wait")
    // More than the cap less what is charged never fits: held, and a job's cap has no month to wait for.
    guard case .hold(let reason, let until) = try admission.decide(amount: Money(picoUSD: 700), job: 7, project: "default") else {
        Issue.record("expected a hold")
        return
    }
    #expect(reason.use.scopeText == "job 7 (nightly)'s cap" && until == nil && reason.waitFor == nil)
    #expect(reason.stored.contains("could cost up to") && !reason.stored.contains("purser"), "the stored reason names no command")
    #expect(admission.uses.map(\.reserved) == [Money(picoUSD: 500)])

    // A project without a cap stays one after a reservation; one it was not given is an error, never a silent admit.
    #expect(try decision(admission.decide(amount: Money(picoUSD: 50), job: 7, project: "default")) == "reserve")
    #expect(throws: Problem.self) { try admission.decide(amount: Money(picoUSD: 1), job: 7, project: "other") }
}

private func decision(_ decision: Admission.Decision) -> String {
    switch decision {
    case .reserve: "reserve"
    case .wait: "wait"
    case .hold: "hold"
    }
}
