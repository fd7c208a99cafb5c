import Testing

@testable import CortexCore

/// The records and state of enforced worker limits (docs/decisions/043-enforced-worker-limits.md):
/// `pids` in the spec and `limit` in `worker.exited`, checked where they are decoded, folded into
/// the worker and the metrics, and absent from what was written before them.
@Suite struct WorkerLimitRecordTests {
    static let supervisor = ProcessIdentity(pid: 100, startTicks: 1)

    @Test func anExitRecordCarriesTheLimitItReachedAndAnUnknownOneIsRefused() throws {
        let exited = WorkerEvent.exited(
            worker: "w-1.0", supervisor: Self.supervisor, exit: .signaled(.kill), timedOut: false, tokensUsed: nil,
            evidence: .roomy, limit: .memory)
        #expect(exited.data["limit"]?.stringValue == "memory")
        #expect(try WorkerEvent.decode(kind: exited.kind, data: exited.data) == exited)
        // Written before limits existed: no field, no limit.
        let old = WorkerEvent.exited(
            worker: "w-1.0", supervisor: Self.supervisor, exit: .exited(0), timedOut: false, tokensUsed: nil, evidence: .roomy)
        #expect(old.data["limit"] == nil)
        #expect(try WorkerEvent.decode(kind: old.kind, data: old.data) == old)
        for bad: JSONValue in [.string("swap"), .int(1), .string("")] {
            guard case .object(var members) = exited.data else { Issue.record("not an object"); return }
            members.removeAll { $0.key == "limit" }
            members.append(JSONMember("limit", bad))
            #expect(throws: EventDecodingError.self) { try WorkerEvent.decode(kind: "worker.exited", data: .object(members)) }
        }
    }

    @Test func aSpecsPidsAreKeptAndOutOfRangeOnesMakeItMalformed() throws {
        var spec = WorkerSpec(command: ["true"])
        #expect(spec.json["pids"] == nil, "a spec without --pids is written as before")
        #expect(WorkerSpec(json: spec.json)?.pids == nil)
        spec.pids = 20
        #expect(WorkerSpec(json: spec.json) == spec)
        for bad: JSONValue in [.int(0), .int(-1), .int(Limits.maximumPIDs + 1), .string("20"), .double(2.5)] {
            guard case .object(var members) = spec.json else { Issue.record("not an object"); return }
            members.removeAll { $0.key == "pids" }
            members.append(JSONMember("pids", bad))
            #expect(WorkerSpec(json: .object(members)) == nil, "pids \(bad.jsonText)")
        }
    }

    @Test func theFoldKeepsTheLimitOnTheWorkerAndCountsItInTheMetrics() throws {
        var state = CortexState()
        var spec = WorkerSpec(command: ["true"])
        spec.memoryBytes = 64 << 20
        _ = Reducer.reduce(&state, record(.worker(.spawn(spec, queue: true, evidence: .roomy)), at: 1_000, id: "r1"))
        let id = try #require(state.workers.live.keys.first)
        _ = Reducer.reduce(&state, record(.worker(.supervise(worker: id, supervisor: Self.supervisor)), at: 1_001, id: "r2"))
        _ = Reducer.reduce(
            &state,
            record(
                .worker(
                    .exited(
                        worker: id, supervisor: Self.supervisor, exit: .signaled(.kill), timedOut: false, tokensUsed: nil,
                        evidence: .roomy, limit: .memory)), at: 1_002, id: "r3"))
        let worker = try #require(state.workers.worker(id))
        #expect(worker.limitReached == .memory)
        #expect(WorkerLimit.memory.reason(worker.spec) == "memory limit 64M reached")
        #expect(try WorkerEntry(json: worker.json).limitReached == .memory)
        let totals = state.metrics.totals
        #expect(totals.limitKills == ["memory": 1])
        #expect(MetricsTotals(json: totals.json)?.limitKills == ["memory": 1])
        // Totals written before limits existed load with none.
        #expect(MetricsTotals(json: MetricsTotals().json)?.limitKills == [:])
        #expect(MetricsTotals().json["limit_kills"] == nil)
    }
}
