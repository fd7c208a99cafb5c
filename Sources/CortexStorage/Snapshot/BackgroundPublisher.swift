import CortexCore
import Dispatch

/// Writes a long-lived process's views and snapshots off its request path, on a Dispatch I/O
/// channel (docs/decisions/005-dispatch-io.md). `cortex session` hands it the state each request
/// left (`CoordinationStore.publish` with `backgroundPublisher` set) and answers at once; the
/// publisher renders and writes on its own serial queue:
///
/// - **Coalesced.** At most one job runs; what is offered meanwhile replaces what was waiting,
///   so requests faster than a view can be written cost one more write, not one each. A snapshot
///   waiting is never dropped for a view (only for a newer snapshot, whose journal is durable too).
/// - **Whole files.** Each file's bytes go to a temp file beside it through a `DispatchIO`
///   channel; only after that write completes (and, for a snapshot, its `fsync`) is it renamed
///   into place (a view with `RENAME_EXCHANGE`, as `publishViews` does). A reader sees the old
///   file or the new one; a process killed mid-write leaves the old one and a hidden temp file.
/// - **Paced.** Views of a folder are written at most once per `minimumViewInterval` (5 ms):
///   at one bash caller a request takes ~0.4 ms, and a write per request spent more CPU
///   creating temp files (ext4's inode allocator) than the requests themselves (decision 005).
/// - **Bounded staleness.** An offer is made before the request's answer is written, and the
///   queue never waits for the request path: a view covers every record answered before the
///   job after the one in flight started, so it lags by at most the rest of one write, the
///   pacing interval and one whole write, and is current once that job ends while no request comes.
/// - **Never older on disk.** A view that displaced a newer one (another process folded
///   further) puts the newer one back, so the coverage on disk does not go down.
///
/// Thread-safe: `offer` and `waitUntilIdle` may be called from any thread; all other work runs
/// on the publisher's queue.
public final class BackgroundPublisher: @unchecked Sendable {
    /// The views of one fold, to be rendered and written.
    struct ViewJob {
        var state: CortexState
        var config: CortexConfig
        var layout: CoordinationLayout
        var mode: CreationMode
        var nowMilliseconds: Int64
    }

    /// A snapshot of one fold whose journal is durable and whose finished tasks are compacted.
    struct SnapshotJob {
        var state: CortexState
        var position: JournalPosition
        var layout: CoordinationLayout
        var mode: CreationMode
        var nowMilliseconds: Int64
    }

    private let queue = DispatchQueue(label: "cortex.background-publisher")
    private let running = DispatchGroup()
    // Below: only touched on `queue`.
    private var waitingViews: [String: ViewJob] = [:]
    private var waitingSnapshots: [String: SnapshotJob] = [:]
    private var busy = false
    /// When the last views job started (monotonic nanoseconds).
    private var lastViewsStarted: UInt64 = 0

    /// The least time between two views jobs: requests faster than that are coalesced into one
    /// write, 5 ms behind at most.
    public static let minimumViewIntervalNanoseconds: UInt64 = 5_000_000
    private var stopSignal: Signal?
    private var signalSources: [any DispatchSourceSignal] = []
    private let report: @Sendable (String) -> Void

    /// A publisher that reports a write that failed with `report` (one line, no newline): the
    /// record it follows already has its answer, so the problem is only told.
    public init(report: @escaping @Sendable (String) -> Void) {
        self.report = report
    }

    /// Ends the process by `signal` once every write offered before it is done, for each of
    /// `signals` (which the caller must have blocked in every thread, so they reach only this
    /// publisher): a session stopped with SIGTERM leaves its views current, not half-published.
    public func endProcessOnSignals(_ signals: [Signal]) {
        queue.sync {
            for signal in signals {
                let source = DispatchSource.makeSignalSource(signal: signal.rawValue, queue: queue)
                source.setEventHandler { [unowned self] in
                    stopSignal = signal
                    if !busy { POSIX.endProcess(by: signal) }
                }
                source.resume()
                signalSources.append(source)
            }
        }
    }

    /// Offers the views of a fold (and a snapshot to write, if one is due) of the folder at
    /// `job.layout.root`; replaces what was waiting for that folder.
    func offer(views: ViewJob, snapshot: SnapshotJob?) {
        queue.async { [self] in
            waitingViews[views.layout.root] = views
            if let snapshot { waitingSnapshots[snapshot.layout.root] = snapshot }
            if !busy {
                busy = true
                running.enter()
                runNext()
            }
        }
    }

    /// Offers a snapshot alone (a command that only read folded far past the last one).
    func offer(snapshot: SnapshotJob) {
        queue.async { [self] in
            waitingSnapshots[snapshot.layout.root] = snapshot
            if !busy {
                busy = true
                running.enter()
                runNext()
            }
        }
    }

    /// Waits until everything offered before this call is written.
    public func waitUntilIdle() {
        queue.sync {}
        running.wait()
    }

    /// Starts the next job, or goes idle (and ends the process if a stop signal came).
    private func runNext() {
        if case let (root, job)? = waitingSnapshots.first {
            waitingSnapshots[root] = nil
            writeSnapshot(job) { [self] in runNext() }
            return
        }
        if case let (root, job)? = waitingViews.first {
            let now = POSIX.monotonicNanoseconds()
            let due = lastViewsStarted + BackgroundPublisher.minimumViewIntervalNanoseconds
            if now < due {
                // Paced: what is offered until then replaces this job.
                queue.asyncAfter(deadline: .now() + .nanoseconds(Int(due - now))) { [self] in runNext() }
                return
            }
            lastViewsStarted = now
            waitingViews[root] = nil
            let views = CoordinationStore.views(
                of: job.state, config: job.config, layout: job.layout, nowMilliseconds: job.nowMilliseconds)
            writeViews(job, views[...]) { [self] in runNext() }
            return
        }
        busy = false
        running.leave()
        if let stopSignal { POSIX.endProcess(by: stopSignal) }
    }

    private func writeSnapshot(_ job: SnapshotJob, then next: @escaping () -> Void) {
        let layout = job.layout
        let bytes = SnapshotCodec.encode(job.state, position: job.position, writtenAtMilliseconds: job.nowMilliseconds, journal: nil)
        write(bytes, beside: layout.snapshot, in: layout.folder, mode: job.mode, sync: true) { [self] temp in
            defer { next() }
            guard let temp else { return }
            do throws(Errno) {
                try layout.folder.rename(temp, layout.snapshot)
            } catch {
                layout.folder.unlink(temp)
                report("the snapshot was not written: cannot rename into \(layout.folder.displayPath(layout.snapshot)): \(error)")
                return
            }
            do throws(CortexError) { try AtomicFile.syncFolder(of: layout.snapshot, in: layout.folder) } catch {
                report("the snapshot may not survive a power loss: \(error.description)")
            }
            VerifiedSnapshot.recordWritten(bytes, layout: layout, mode: job.mode)
        }
    }

    /// Writes the views in `views` one after the other, each only when the view on disk covers less.
    private func writeViews(
        _ job: ViewJob, _ views: ArraySlice<CoordinationStore.ViewRendering>, then next: @escaping () -> Void
    ) {
        guard let view = views.first else { return next() }
        let rest = views.dropFirst()
        let folder = job.layout.folder
        if let onDisk = AtomicFile.tail(of: view.path, in: folder, bytes: view.tailBytes).flatMap(Views.coverage(inTail:)),
            onDisk >= view.coverage
        {
            return writeViews(job, rest, then: next)
        }
        // The allocation list once long: at a bounded rate, as one-process calls write it (decision 042).
        if view.isRateLimited, !CoordinationStore.allocationsViewDue(job.state, layout: job.layout, nowMilliseconds: job.nowMilliseconds) {
            return writeViews(job, rest, then: next)
        }
        write(view.render().prettySerialized(), beside: view.path, in: folder, mode: job.mode, sync: false) { [self] temp in
            if let temp {
                swapIn(temp, at: view.path, in: folder, coverage: view.coverage, tailBytes: view.tailBytes)
            }
            writeViews(job, rest, then: next)
        }
    }

    /// Swaps the finished temp file `temp` in at `path`; when the file it displaced covers more
    /// (another process published a newer view meanwhile), swaps that one back, and so on while
    /// what comes back is newer than what was put in. Then removes the temp name.
    private func swapIn(_ temp: String, at path: String, in folder: FolderDescriptor, coverage: Int64, tailBytes: Int) {
        var placed = coverage
        do throws(Errno) {
            for _ in 0..<8 {
                try folder.exchange(temp, path)
                guard let displaced = AtomicFile.tail(of: temp, in: folder, bytes: tailBytes).flatMap(Views.coverage(inTail:)),
                    displaced > placed
                else {
                    break
                }
                placed = displaced
            }
            folder.unlink(temp)
        } catch {
            // Nothing there yet (ENOENT), or no RENAME_EXCHANGE here: a plain rename.
            do throws(Errno) {
                try folder.rename(temp, path)
            } catch {
                folder.unlink(temp)
                report("the views are stale: cannot rename into \(folder.displayPath(path)): \(error)")
            }
        }
    }

    /// Writes `bytes` to a new temp file beside `name` through a `DispatchIO` channel, `fsync`s
    /// it when `sync`, closes it, and calls `done` on the queue with its name (nil, after
    /// reporting, when it failed; the temp file is then removed).
    private func write(
        _ bytes: [UInt8], beside name: String, in folder: FolderDescriptor, mode: CreationMode, sync: Bool,
        done: @escaping (String?) -> Void
    ) {
        let temp = AtomicFile.temporaryName(beside: name, in: folder)
        let fd: Int32
        do throws(Errno) {
            fd = try folder.open(temp, [.writeOnly, .create, .exclusive], mode: mode.bits)
            do throws(Errno) { try mode.apply(to: fd) } catch {
                POSIX.close(fd)
                folder.unlink(temp)
                throw error
            }
        } catch {
            report("cannot write \(folder.displayPath(name)): \(error)")
            return done(nil)
        }
        let outcome = WriteOutcome()
        let channel = DispatchIO(type: .stream, fileDescriptor: fd, queue: queue) { [self] _ in
            // The channel is done with the descriptor: flush it if asked, close it, hand it on.
            if outcome.error == nil, sync {
                do throws(Errno) { try POSIX.fsync(fd) } catch { outcome.error = error }
            }
            POSIX.close(fd)
            if let error = outcome.error {
                folder.unlink(temp)
                report("cannot write \(folder.displayPath(name)): \(error)")
                return done(nil)
            }
            done(temp)
        }
        let data = bytes.withUnsafeBytes { DispatchData(bytes: $0) }
        channel.write(offset: 0, data: data, queue: queue) { finished, _, error in
            if error != 0, outcome.error == nil { outcome.error = Errno(error) }
            if finished { channel.close() }
        }
    }

    /// What a channel's write handler tells its cleanup handler (both run on the queue).
    private final class WriteOutcome: @unchecked Sendable {
        var error: Errno?
    }
}
