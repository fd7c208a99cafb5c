import CortexCore

extension CoordinationStore {
    /// What `claim` ended with.
    public enum ClaimResult: Sendable {
        /// Task `task` is the claimer's, under fencing token `token`, by record `record`.
        case claimed(task: TaskEntry, token: Int64, record: String)
        /// Nothing claimable now: tasks are held back only by their tenants' quotas (`reason`),
        /// which come back as usage drops.
        case heldByQuota(String)
        /// Nothing claimable, and nothing came within the wait asked for.
        case waitedInVain
        /// Nothing claimable, and no wait was asked for.
        case nothing
    }

    /// Claims a task for `request` (`cortex-task claim`): stamps the claimer's host, touches its
    /// heartbeat file, looks for a claimable task in the folded state and appends the claim.
    /// Another claimer's record folded first: it looks again. With `waitMilliseconds`, it sleeps
    /// on the journal (waiter armed before the first look, so a task created in between still
    /// wakes it, and woken early for a task whose retry backoff ends) until a task is claimed or
    /// the time is up. Over etcd, the claimed task's context file is fetched into this host's
    /// folder before it returns (a context that cannot be read fails the attempt, retried by the
    /// task's rules, and is thrown).
    public func claim(_ request: TaskClaim, waitMilliseconds: Int64?) throws(CortexError) -> ClaimResult {
        var request = request
        // The claimer's heartbeat file is in this host's folder: this host's reaper judges it.
        request.host = config.hostID
        try WorkerFiles.touchHeartbeat(layout, worker: request.worker, permissions: permissions)
        let deadline = POSIX.monotonicNanoseconds() + UInt64(max(0, waitMilliseconds ?? 0)) * 1_000_000
        // Armed before the first look, so a task created between the look and the wait still wakes
        // us; and the fold caught up once it is armed, since a waiter only hears appends from its
        // arming on (a task created between the store's open and the arming would wake nothing).
        let watcher = waitMilliseconds == nil ? nil : try makeCaughtUpWaiter()
        while true {
            let now = POSIX.wallClockMilliseconds()
            let look = state.tasks.claimLook(by: request, at: now, quotas: ClaimQuotas(state))
            if look.task != nil {
                watcher?.disarm()
                let submission = try submit(.taskClaim(request))
                publishAfterRecording()
                if case .claimed(let id, let token) = submission.outcome, let task = try self.task(id) {
                    try fetchContext(of: task, claim: token)
                    return .claimed(task: task, token: token, record: submission.record.id)
                }
                // Another claimer's record folded first: watch again, then look again before waiting.
                try watcher?.rearm()
                try catchUp()
                continue
            }
            let remainingNanoseconds = Int64(deadline) - Int64(POSIX.monotonicNanoseconds())
            guard let watcher, remainingNanoseconds > 0 else {
                watcher?.disarm()
                if let quota = look.heldBy { return .heldByQuota(quota) }
                return waitMilliseconds == nil ? .nothing : .waitedInVain
            }
            var sleepMilliseconds = remainingNanoseconds / 1_000_000 + 1
            if let retryAt = state.tasks.nextRetryTime(for: request, after: now) {
                sleepMilliseconds = min(sleepMilliseconds, max(1, retryAt - now))
            }
            _ = watcher.wait(timeoutMilliseconds: Int32(min(sleepMilliseconds, 60_000)))
            try catchUp()
        }
    }

    /// Over etcd, puts the claimed task's context file into this host's folder (fetched and
    /// checked when another host created it) before its path is printed. A context that cannot
    /// be read fails the attempt, naming why (retried by the task's rules: the creating host
    /// still has its copy), and the claim ends with that error.
    private func fetchContext(of task: TaskEntry, claim: Int64) throws(CortexError) {
        guard let context = task.spec.context else { return }
        do { try materialiseArtifact(context) } catch {
            let reason = "context file \(context) unreadable on host \(config.hostID ?? "?"): \(error.description)"
            _ = try? submit(.taskFail(task: task.id, claim: claim, error: String(reason.prefix(4096)), retry: true))
            publishAfterRecording()
            throw error
        }
    }
}
