extension ISOTime {
    /// Milliseconds since the Unix epoch of `2026-11-23T05:00:00Z` (also with a fraction, a
    /// space for the `T`, or a date alone at midnight UTC); nil for anything else.
    public static func parse(_ text: String) -> Int64? {
        let bytes = Array(text.utf8)
        func number(_ from: Int, _ count: Int) -> Int64? {
            guard from + count <= bytes.count else { return nil }
            var value: Int64 = 0
            for byte in bytes[from..<(from + count)] {
                guard (0x30...0x39).contains(byte) else { return nil }
                value = value * 10 + Int64(byte - 0x30)
            }
            return value
        }
        guard let year = number(0, 4), bytes.count >= 10, bytes[4] == UInt8(ascii: "-"), let month = number(5, 2),
            bytes[7] == UInt8(ascii: "-"), let day = number(8, 2), (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var secondOfDay: Int64 = 0
        var index = 10
        if bytes.count > 10 {
            guard bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: " "), let hour = number(11, 2),
                bytes.count > 13, bytes[13] == UInt8(ascii: ":"), let minute = number(14, 2), hour < 24, minute < 60
            else { return nil }
            index = 16
            var second: Int64 = 0
            if index < bytes.count, bytes[index] == UInt8(ascii: ":") {
                guard let parsed = number(17, 2), parsed < 61 else { return nil }
                second = parsed
                index = 19
                if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                    index += 1
                    while index < bytes.count, (0x30...0x39).contains(bytes[index]) { index += 1 }
                }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "Z") { index += 1 }
            secondOfDay = hour * 3600 + minute * 60 + second
        }
        guard index == bytes.count else { return nil }
        // Howard Hinnant's days_from_civil.
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return (days * 86_400 + secondOfDay) * 1000
    }
}
