import CortexCore
import CortexStorage

extension WorkerSupervision {
    /// What stopping one worker did.
    public struct Stop: Sendable {
        /// The stop record and the fold's outcome for it (`.stopping` when it changed anything).
        public var submission: CoordinationStore.Submission
        /// True when the worker's supervisor was sent SIGTERM.
        public var signalled: Bool
    }

    /// Records a stop for worker `id` and, when the fold says it is stopping, retires its request
    /// if that ended it for good (stopped while queued: it never runs) and asks its supervisor to
    /// stop it: SIGTERM to the supervisor's group, which forwards it to the worker and SIGKILLs
    /// the worker after its grace. Only a supervisor whose pid and start time still match, that
    /// runs as the worker's requester and carries the worker's mark, is signalled. With
    /// `publishing`, the views are published after the record and before the signal (a single
    /// stop); without, the caller publishes once after several.
    public static func stop(_ id: String, in store: CoordinationStore, publishing: Bool = false) throws(CortexError) -> Stop {
        let known = store.state.workers.live[id]
        let submission = try store.submit(.worker(.stop(worker: id)))
        if publishing { store.publishAfterRecording() }
        guard case .stopping = submission.outcome else { return Stop(submission: submission, signalled: false) }
        retireRequest(of: id, endedBy: submission.record.id, in: store)
        var signalled = false
        if let known, let supervisor = store.state.workers.live[id]?.supervisor,
            let owner = known.spec.request.flatMap({ WorkerRequest.owner($0, in: store.layout) }),
            supervisor.isMarked(asWorker: id)
        {
            signalled = supervisor.signalGroup(.terminate, ownedBy: owner)
        }
        return Stop(submission: submission, signalled: signalled)
    }
}
