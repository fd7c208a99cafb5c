import CortexCore

/// The canonical `results/<task>.json` next to the attempt's own file.
public enum ResultFiles {
    /// Makes `results/<task>.json` the accepted attempt's result: a hard link, renamed into place.
    public static func publish(_ layout: CoordinationLayout, task: String, attemptFile: String) throws(CortexError) {
        try AtomicFile.link(attemptFile, replacing: layout.results + "/" + task + ".json", in: layout.folder)
    }
}
