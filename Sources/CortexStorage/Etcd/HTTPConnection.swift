import CortexCore

/// One HTTP/1.1 reply.
public struct HTTPResponse: Sendable {
    /// The status code (200, 400, 503, …).
    public var status: Int
    /// The header fields, names in lower case.
    public var headers: [String: String]
    /// The whole body (de-chunked).
    public var body: [UInt8]
}

/// A keep-alive HTTP/1.1 client connection over any `ByteStream`: POSTs with a
/// `Content-Length` body, replies framed by `Content-Length`, `chunked` or the end of the
/// stream, every step before a deadline, every reply at most `maximumBodyBytes`. A reply can
/// also be read piece by piece (`readBodyPiece`) for a stream that never ends (etcd's watch).
/// Used by one thread at a time (`@unchecked Sendable` so a pool can hand it from one caller
/// to the next under its lock).
public final class HTTPConnection: @unchecked Sendable {
    /// The stream the bytes go through.
    public let stream: any ByteStream
    /// `host:port`, sent as the `Host` header and named in errors.
    public let authority: String
    /// The largest body accepted (larger replies fail with `.io` and close the connection).
    public let maximumBodyBytes: Int
    /// False once the connection cannot carry another request (closed, broken, or mid-reply).
    public private(set) var isReusable = true

    private var buffer: [UInt8] = []
    private var start = 0
    private var framing = Framing.none
    private var closesAfterReply = false

    private enum Framing {
        case none
        case length(Int)
        case chunkSize
        case chunkData(Int)
        case chunkEnd
        case trailers
        case untilClose
        case finished
    }

    /// A connection over `stream` to `authority`.
    public init(stream: any ByteStream, authority: String, maximumBodyBytes: Int = 64 << 20) {
        self.stream = stream
        self.authority = authority
        self.maximumBodyBytes = maximumBodyBytes
    }

    /// Closes the stream.
    public func close() {
        isReusable = false
        stream.close()
    }

    /// POSTs `body` to `path` and reads the whole reply before `deadline`.
    public func post(_ path: String, body: [UInt8], headers: [(String, String)] = [], deadline: UInt64) throws(CortexError) -> HTTPResponse
    {
        var response = try startPost(path, body: body, headers: headers, deadline: deadline)
        var total: [UInt8] = []
        while let piece = try readBodyPiece(deadline: deadline) {
            total += piece
            if total.count > maximumBodyBytes {
                close()
                throw .io(operation: "read a reply from", path: authority, errno: .fileTooLarge)
            }
        }
        response.body = total
        return response
    }

    /// Sends a POST and reads the status line and headers; the body follows through `readBodyPiece`.
    public func startPost(_ path: String, body: [UInt8], headers: [(String, String)] = [], deadline: UInt64) throws(CortexError)
        -> HTTPResponse
    {
        guard isReusable else { throw .io(operation: "send to", path: authority, errno: .badFileDescriptor) }
        isReusable = false
        var head = "POST \(path) HTTP/1.1\r\nHost: \(authority)\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "\r\n"
        do {
            try stream.send(Array(head.utf8) + body, deadline: deadline)
            return try readHead(deadline: deadline)
        } catch {
            stream.close()
            throw error
        }
    }

    /// The next piece of the current reply's body, or nil once it is complete (then the
    /// connection may carry the next request).
    /// - Throws: `.tryLater` when nothing arrived before `deadline` (the reply can still be read
    ///   on with a later deadline); `.io` when the stream broke or the framing is wrong.
    public func readBodyPiece(deadline: UInt64) throws(CortexError) -> [UInt8]? {
        while true {
            switch framing {
            case .none, .finished:
                return nil
            case .length(let left):
                if left == 0 {
                    finish()
                    return nil
                }
                if available == 0 { try fill(deadline: deadline, endAllowed: false) }
                let piece = take(min(left, available))
                framing = .length(left - piece.count)
                return piece
            case .untilClose:
                if available == 0 {
                    if try !fill(deadline: deadline, endAllowed: true) {
                        framing = .finished
                        stream.close()
                        return nil
                    }
                }
                return take(available)
            case .chunkSize:
                let line = try readLine(deadline: deadline)
                let digits = line.split(separator: UInt8(ascii: ";"), maxSplits: 1, omittingEmptySubsequences: false)[0]
                guard let size = Int(String(decoding: digits, as: UTF8.self).trimmingSpaces, radix: 16), size >= 0 else {
                    throw broken("a bad chunk size")
                }
                framing = size == 0 ? .trailers : .chunkData(size)
            case .chunkData(let left):
                if available == 0 { try fill(deadline: deadline, endAllowed: false) }
                let piece = take(min(left, available))
                framing = piece.count == left ? .chunkEnd : .chunkData(left - piece.count)
                return piece
            case .chunkEnd:
                guard try readLine(deadline: deadline).isEmpty else { throw broken("no line end after a chunk") }
                framing = .chunkSize
            case .trailers:
                if try readLine(deadline: deadline).isEmpty { finish() }
            }
        }
    }

    private var available: Int { buffer.count - start }

    private func finish() {
        framing = .finished
        isReusable = !closesAfterReply
        if closesAfterReply { stream.close() }
    }

    private func take(_ count: Int) -> [UInt8] {
        let piece = Array(buffer[start..<start + count])
        start += count
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        return piece
    }

    /// Reads more bytes into the buffer. Returns false at the end of the stream when `endAllowed`.
    @discardableResult
    private func fill(deadline: UInt64, endAllowed: Bool) throws(CortexError) -> Bool {
        let got: [UInt8]
        do {
            got = try stream.receive(maximum: 64 * 1024, deadline: deadline)
        } catch {
            if case .tryLater = error { throw error }
            close()
            throw error
        }
        if got.isEmpty {
            close()
            if endAllowed { return false }
            throw broken("the connection closed mid-reply")
        }
        if start > 0 && start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        buffer += got
        return true
    }

    /// One line without its CRLF; the line stays in the buffer until complete.
    private func readLine(deadline: UInt64) throws(CortexError) -> [UInt8] {
        var scanned = 0
        while true {
            if let end = buffer[(start + scanned)...].firstIndex(of: UInt8(ascii: "\n")) {
                var line = Array(buffer[start..<end])
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                _ = take(end + 1 - start)
                return line
            }
            scanned = available
            if available > 64 * 1024 { throw broken("a header line longer than 64 KiB") }
            try fill(deadline: deadline, endAllowed: false)
        }
    }

    private func readHead(deadline: UInt64) throws(CortexError) -> HTTPResponse {
        let statusLine = String(decoding: try readLine(deadline: deadline), as: UTF8.self)
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw broken("a bad status line")
        }
        var headers: [String: String] = [:]
        var headerBytes = 0
        while true {
            let line = try readLine(deadline: deadline)
            if line.isEmpty { break }
            headerBytes += line.count
            if headerBytes > 64 * 1024 { throw broken("more than 64 KiB of headers") }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { throw broken("a bad header line") }
            let name = String(decoding: line[..<colon], as: UTF8.self).lowercased()
            headers[name] = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingSpaces
        }
        let closes = headers["connection"]?.lowercased() == "close"
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            framing = .chunkSize
        } else if let text = headers["content-length"] {
            guard let length = Int(text), length >= 0 else { throw broken("a bad Content-Length") }
            guard length <= maximumBodyBytes else {
                close()
                throw .io(operation: "read a reply from", path: authority, errno: .fileTooLarge)
            }
            framing = .length(length)
        } else {
            framing = .untilClose
        }
        closesAfterReply = closes
        return HTTPResponse(status: status, headers: headers, body: [])
    }

    private func broken(_ what: String) -> CortexError {
        close()
        return .io(operation: "read a reply (\(what)) from", path: authority, errno: .ioError)
    }
}

extension String {
    /// The text without leading and trailing spaces and tabs.
    fileprivate var trimmingSpaces: String {
        var view = Substring(self)
        while let first = view.first, first == " " || first == "\t" { view.removeFirst() }
        while let last = view.last, last == " " || last == "\t" { view.removeLast() }
        return String(view)
    }
}
