import CortexCore

/// A connected, ordered, two-way byte stream: what an HTTP client speaks over, whether the
/// bytes travel in clear on a TCP socket or inside TLS (`TLSStream`). Every call that can wait
/// takes a deadline on the `POSIX.monotonicNanoseconds()` clock and throws
/// `CortexError.tryLater` once it passes, so a peer that never answers never hangs a tool.
/// One caller at a time: a stream is not for concurrent use.
public protocol ByteStream: AnyObject {
    /// Sends every byte of `bytes`, waiting for the peer to take them until `deadline`.
    func sendAll(_ bytes: [UInt8], deadline: UInt64) throws(CortexError)

    /// Receives between 1 and `maximumCount` bytes, waiting for them until `deadline`; `[]`
    /// when the peer ended the stream.
    func receive(upTo maximumCount: Int, deadline: UInt64) throws(CortexError) -> [UInt8]

    /// Ends the stream and releases its descriptor; later calls throw. Calling it twice is harmless.
    func close()
}
