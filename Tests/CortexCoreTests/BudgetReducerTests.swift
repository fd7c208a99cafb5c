import Testing

@testable import CortexCore
@testable import CortexStorage

/// The budget rules, tested on the pure reducer: no files, no clock.
@Suite struct BudgetReducerTests {
    func fold(_ events: [Event]) -> (CortexState, [Outcome]) {
        var state = CortexState()
        let outcomes = events.enumerated().map { index, event in Reducer.reduce(&state, record(event, at: Int64(index))) }
        return (state, outcomes)
    }

    @Test func anAllocationIsGrantedOnlyIfItFitsWhatIsLeft() {
        let (state, outcomes) = fold([
            .budgetSet(total: 100), .budgetAllocate(BudgetRequest(tokens: 60)), .budgetAllocate(BudgetRequest(tokens: 41)),
            .budgetAllocate(BudgetRequest(tokens: 40)), .budgetAllocate(BudgetRequest(tokens: 1)),
        ])
        #expect(outcomes[1] == .granted(allocation: "alloc-1.1"))
        #expect(outcomes[2] == .refused("budget would be exceeded: 41 tokens requested, 40 of 100 available"))
        #expect(outcomes[3] == .granted(allocation: "alloc-1.3"))
        #expect(outcomes[4] == .refused("budget would be exceeded: 1 tokens requested, 0 of 100 available"))
        #expect(state.budget.reserved == 100)
        #expect(state.budget.available == 0)
    }

    @Test func noBudgetMeansNothingIsGranted() {
        let (_, outcomes) = fold([.budgetAllocate(BudgetRequest(tokens: 1))])
        #expect(outcomes == [.refused("budget would be exceeded: 1 tokens requested, 0 of 0 available")])
    }

    @Test func releaseWithoutUsedSpendsTheWholeReservation() {
        let (state, outcomes) = fold([
            .budgetSet(total: 100), .budgetAllocate(BudgetRequest(tokens: 30)), .budgetRelease(allocation: "alloc-1.1", used: nil),
        ])
        #expect(outcomes[2] == .released(allocation: "alloc-1.1", spent: 30, returned: 0))
        #expect(state.budget.spent == 30)
        #expect(state.budget.reserved == 0)
        #expect(state.budget.available == 70)
    }

    @Test func releaseWithUsedReturnsTheRest() {
        let (state, outcomes) = fold([
            .budgetSet(total: 100), .budgetAllocate(BudgetRequest(tokens: 30)), .budgetRelease(allocation: "alloc-1.1", used: 12),
        ])
        #expect(outcomes[2] == .released(allocation: "alloc-1.1", spent: 12, returned: 18))
        #expect(state.budget.available == 88)
    }

    @Test func releasingTwiceIsRefusedAndUnknownIsRejected() {
        let (state, outcomes) = fold([
            .budgetSet(total: 100), .budgetAllocate(BudgetRequest(tokens: 30)), .budgetRelease(allocation: "alloc-1.1", used: 0),
            .budgetRelease(allocation: "alloc-1.1", used: 0), .budgetRelease(allocation: "alloc-1.9", used: nil),
            .budgetRelease(allocation: "nonsense", used: nil),
        ])
        #expect(outcomes[3] == .refused("allocation alloc-1.1 was already released"))
        #expect(outcomes[4] == .rejected("no allocation alloc-1.9"))
        #expect(outcomes[5] == .rejected("no allocation nonsense"))
        #expect(state.budget.spent == 0)
    }

    @Test func usingMoreThanReservedIsRejectedAndChangesNothing() {
        let (state, outcomes) = fold([
            .budgetSet(total: 100), .budgetAllocate(BudgetRequest(tokens: 30)), .budgetRelease(allocation: "alloc-1.1", used: 31),
        ])
        #expect(outcomes[2] == .rejected("allocation alloc-1.1 reserved 30 tokens; --used 31 is more"))
        #expect(state.budget.reserved == 30)
    }

    @Test func aTenantNeverHoldsMoreThanItsQuotaCountingSpentTokens() {
        let (state, outcomes) = fold([
            .budgetSet(total: 1000), .budgetQuota(tenant: "acme", tokens: 100),
            .budgetAllocate(BudgetRequest(tokens: 60, tenant: "acme")),
            .budgetAllocate(BudgetRequest(tokens: 41, tenant: "acme")),  // 60 + 41 > 100
            .budgetAllocate(BudgetRequest(tokens: 41, tenant: "other")),  // no quota
            .budgetRelease(allocation: "alloc-1.2", used: 50),  // acme: 50 spent, 0 reserved
            .budgetAllocate(BudgetRequest(tokens: 50, tenant: "acme")),  // exactly the quota
            .budgetAllocate(BudgetRequest(tokens: 1, tenant: "acme")),
        ])
        #expect(outcomes[3] == .refused("tenant acme quota would be exceeded: 41 tokens requested, holds 60 of 100"))
        #expect(outcomes[4] == .granted(allocation: "alloc-1.4"))
        #expect(outcomes[6] == .granted(allocation: "alloc-1.6"))
        #expect(outcomes[7] == .refused("tenant acme quota would be exceeded: 1 tokens requested, holds 100 of 100"))
        #expect(state.budget.held(byTenant: "acme") == 100)
    }

    @Test func aQuotaBelowWhatIsHeldBlocksNewAllocationsButRevokesNothing() {
        let (state, outcomes) = fold([
            .budgetSet(total: 1000), .budgetAllocate(BudgetRequest(tokens: 80, tenant: "acme")),
            .budgetQuota(tenant: "acme", tokens: 50), .budgetAllocate(BudgetRequest(tokens: 1, tenant: "acme")),
        ])
        #expect(outcomes[3] == .refused("tenant acme quota would be exceeded: 1 tokens requested, holds 80 of 50"))
        #expect(state.budget.reserved == 80)
    }

    @Test func resetStartsANewPeriodKeepingReservations() {
        let (state, outcomes) = fold([
            .budgetSet(total: 100), .budgetQuota(tenant: "t", tokens: 50),
            .budgetAllocate(BudgetRequest(tokens: 40, tenant: "t")), .budgetRelease(allocation: "alloc-1.2", used: 40),
            .budgetAllocate(BudgetRequest(tokens: 10, tenant: "t")), .budgetAllocate(BudgetRequest(tokens: 1, tenant: "t")),
            .budgetReset, .budgetAllocate(BudgetRequest(tokens: 40, tenant: "t")),
        ])
        #expect(outcomes[5] == .refused("tenant t quota would be exceeded: 1 tokens requested, holds 50 of 50"))
        #expect(outcomes[7] == .granted(allocation: "alloc-1.7"))  // the id is its record's position
        #expect(state.budget.period == 2)
        #expect(state.budget.periodStartedMilliseconds == 6)
        #expect(state.budget.spent == 0)
        #expect(state.budget.reserved == 50)
        #expect(state.budget.available == 50)
    }

    @Test func shrinkingTheTotalBelowWhatIsHeldLeavesAvailableAtZero() {
        let (state, outcomes) = fold([
            .budgetSet(total: 100), .budgetAllocate(BudgetRequest(tokens: 80)), .budgetSet(total: 50),
            .budgetAllocate(BudgetRequest(tokens: 1)),
        ])
        #expect(state.budget.available == 0)
        #expect(outcomes[3] == .refused("budget would be exceeded: 1 tokens requested, 0 of 50 available"))
    }

    @Test func malformedAndUnknownRecordsChangeNothing() {
        var state = CortexState()
        _ = Reducer.reduce(&state, record(.budgetSet(total: 10)))
        let before = state.budget
        let bad = [
            Record(id: "a", timeMilliseconds: 1, kind: "budget.allocate", data: .object(["tokens": "ten"])),
            Record(id: "b", timeMilliseconds: 1, kind: "budget.allocate", data: .object(["tokens": -5])),
            Record(id: "c", timeMilliseconds: 1, kind: "budget.allocate", data: .object(["tokens": 0])),
            Record(id: "d", timeMilliseconds: 1, kind: "budget.set", data: .array([])),
            Record(id: "e", timeMilliseconds: 1, kind: "budget.release", data: .object([:])),
        ]
        for item in bad {
            guard case .rejected = Reducer.reduce(&state, item) else {
                Issue.record("\(item.id) was not rejected")
                continue
            }
        }
        #expect(Reducer.reduce(&state, Record(id: "f", timeMilliseconds: 1, kind: "from.the.future", data: .null)) == .ignored)
        #expect(state.budget == before)
    }

    @Test func grantedTokensNeverExceedTheBudgetForAnyInterleaving() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var state = CortexState()
            var granted: [String] = []
            _ = Reducer.reduce(&state, record(.budgetSet(total: Int64.random(in: 0...500, using: &generator))))
            for _ in 0..<100 {
                let event: Event
                switch Int.random(in: 0..<10, using: &generator) {
                case 0..<6:
                    event = .budgetAllocate(
                        BudgetRequest(tokens: Int64.random(in: 1...60, using: &generator), tenant: Bool.random() ? "a" : nil))
                case 6..<8:
                    event = .budgetRelease(
                        allocation: granted.randomElement(using: &generator) ?? "alloc-1.1",
                        used: Int64.random(in: 0...30, using: &generator))
                case 8: event = .budgetQuota(tenant: "a", tokens: Int64.random(in: 0...200, using: &generator))
                default: event = .budgetSet(total: Int64.random(in: 0...500, using: &generator))
                }
                let before = state.budget
                let outcome = Reducer.reduce(&state, record(event))
                if case .granted(let id) = outcome {
                    granted.append(id)
                    #expect(state.budget.reserved + state.budget.spent <= state.budget.total)
                    #expect(state.budget.reserved - before.reserved <= before.available)
                }
                #expect(state.budget.reserved == state.budget.allocations.values.reduce(0) { $0 + $1.tokens })
                #expect(state.budget.available >= 0)
            }
        }
    }

    @Test func stateSurvivesItsSnapshotEncoding() throws {
        let (state, _) = fold([
            .budgetSet(total: 1000), .budgetQuota(tenant: "acme", tokens: 100),
            .budgetAllocate(BudgetRequest(tokens: 60, holder: "w-1", task: "task-1", tenant: "acme")),
            .budgetAllocate(BudgetRequest(tokens: 5)), .budgetRelease(allocation: "alloc-1.3", used: 2), .budgetReset,
        ])
        let decoded = try #require(
            SnapshotCodec.decode(ImmutableBytes(SnapshotCodec.encode(state, position: .start, writtenAtMilliseconds: 0)))
        ).0
        #expect(decoded == state)
    }
}

@Suite struct FunctionalReducerTests {
    @Test func theFunctionalFormLeavesItsInputAloneAndMatchesTheInPlaceForm() {
        let start = CortexState()
        let grant = record(.budgetSet(total: 10))
        let (next, outcome) = Reducer.reducing(start, grant, at: .start)
        var inPlace = CortexState()
        #expect(Reducer.reduce(&inPlace, grant) == outcome)
        #expect(next == inPlace)
        #expect(start == CortexState())
    }
}
