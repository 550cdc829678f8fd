import Foundation

/// Batches answered in-process for `--simulate`, with nothing kept in memory between calls, so a run that
/// dies and the next one see the same batch: its id carries its creation time, its completion time is modelled
/// from its key (between 2 and 12 minutes of real time, divided by the simulation's speedup), and its answers
/// are the simulator's, made from the batch's requests when the results are read.
struct SimulatedBatchAPI: BatchAPI {
    /// Real time, whatever clock the run plans by: a simulated batch takes time as the simulated calls do.
    let clock = WallClock.system
    let speedup: Double
    /// The calls a batch stands for, from the database, by provider batch id.
    let calls: @Sendable (String) async throws -> [(customID: String, call: ProviderCall)]

    func findUpload(named name: String) async throws(BatchAPIError) -> String? { nil }

    func upload(file: URL, named name: String) async throws(BatchAPIError) -> String { "simfile-\(name)" }

    func findBatch(key: String, database: String, createdAfter: Int64, requestCount: Int) async throws(BatchAPIError) -> [BatchCandidate] { [] }

    func create(key: String, database: String, inputFileID: String?, file: URL) async throws(BatchAPIError) -> String {
        "simbatch-\(clock.now())-\(key)"
    }

    func firstCustomID(of status: BatchStatus, batchID: String) async throws -> String? { try await calls(batchID).first?.customID }

    func status(_ batchID: String) async throws(BatchAPIError) -> BatchStatus {
        let ended = (created(batchID) ?? 0) + duration(batchID) <= clock.now()
        return BatchStatus(phase: ended ? .ended : .running, providerStatus: ended ? "completed" : "in_progress")
    }

    func readResults(of status: BatchStatus, batchID: String, chunk body: ([BatchResultLine]) async throws -> Void) async throws {
        let members = try await calls(batchID)
        let cached = SimulatedCache.batch(members.map { member in
            (member.call.model, member.call.provider.name, PromptPrefix(body: member.call.body, dialect: member.call.provider.dialect))
        })
        let lines = zip(members, cached).map { member, cached in
            BatchResultLine(customID: member.customID, outcome: .succeeded(Simulator.answer(member.call, cached: cached)))
        }
        for start in stride(from: 0, to: lines.count, by: BatchResultFile.chunkLines) {
            try await body(Array(lines[start..<min(start + BatchResultFile.chunkLines, lines.count)]))
        }
    }

    func cancel(_ batchID: String) async throws(BatchAPIError) {}

    private func created(_ batchID: String) -> Int64? { batchID.split(separator: "-").dropFirst().first.flatMap { Int64($0) } }

    /// 2 to 12 minutes, from the batch's key.
    private func duration(_ batchID: String) -> Int64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in batchID.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        let milliseconds = 120_000 + Int64(hash % 600_000)
        return Int64(Double(milliseconds) / max(speedup, 0.001))
    }
}
