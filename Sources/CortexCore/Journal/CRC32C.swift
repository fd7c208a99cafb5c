import CCortexBytes

/// CRC-32C (Castagnoli), the checksum on every journal line. Table-driven, slicing by 8,
/// so a 200-byte record costs a fraction of a microsecond.
public enum CRC32C {
    private static let tables: [[UInt32]] = {
        var tables = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for byte in 0..<256 {
            var crc = UInt32(byte)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            tables[0][byte] = crc
        }
        for byte in 0..<256 {
            var crc = tables[0][byte]
            for table in 1..<8 {
                crc = tables[0][Int(crc & 0xFF)] ^ (crc >> 8)
                tables[table][byte] = crc
            }
        }
        return tables
    }()

    /// The CRC-32C of `bytes`; with `previous`, the CRC-32C of the bytes that gave `previous`
    /// followed by `bytes` (a checksum over two separate buffers). Uses the CPU's `crc32`
    /// instruction where there is one (a 1.6 MB snapshot in a fraction of a millisecond).
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing previous: UInt32 = 0) -> UInt32 {
        var state = previous ^ 0xFFFF_FFFF
        if let base = bytes.baseAddress, cortex_crc32c_hardware(&state, base, bytes.count) != 0 {
            return state ^ 0xFFFF_FFFF
        }
        return tableChecksum(bytes, continuing: previous)
    }

    /// The same checksum from the tables (CPUs without SSE4.2; tests compare the two).
    static func tableChecksum(_ bytes: UnsafeRawBufferPointer, continuing previous: UInt32 = 0) -> UInt32 {
        var crc: UInt32 = previous ^ 0xFFFF_FFFF
        var index = 0
        let count = bytes.count
        tables.withUnsafeBufferPointer { tableArrays in
            let t0 = tableArrays[0]
            let t1 = tableArrays[1]
            let t2 = tableArrays[2]
            let t3 = tableArrays[3]
            let t4 = tableArrays[4]
            let t5 = tableArrays[5]
            let t6 = tableArrays[6]
            let t7 = tableArrays[7]
            while count - index >= 8 {
                let low =
                    crc
                    ^ (UInt32(bytes[index]) | UInt32(bytes[index + 1]) << 8
                        | UInt32(bytes[index + 2]) << 16 | UInt32(bytes[index + 3]) << 24)
                crc =
                    t7[Int(low & 0xFF)] ^ t6[Int((low >> 8) & 0xFF)] ^ t5[Int((low >> 16) & 0xFF)]
                    ^ t4[Int(low >> 24)] ^ t3[Int(bytes[index + 4])] ^ t2[Int(bytes[index + 5])]
                    ^ t1[Int(bytes[index + 6])] ^ t0[Int(bytes[index + 7])]
                index += 8
            }
            while index < count {
                crc = t0[Int((crc ^ UInt32(bytes[index])) & 0xFF)] ^ (crc >> 8)
                index += 1
            }
        }
        return crc ^ 0xFFFF_FFFF
    }

    /// The CRC-32C of a byte array.
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }
}
