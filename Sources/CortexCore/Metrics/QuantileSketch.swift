/// A streaming summary of whole-number samples (milliseconds, tokens) with bounded memory:
/// log-linear buckets in integer arithmetic, like HdrHistogram with 7 significant bits.
/// Values below 128 are kept exactly; above, each bucket spans 1/64 of its power of two, so a
/// quantile is off by less than 1/128 (0.8%) of the true value. Memory is one counter per
/// occupied bucket: at most 64 per power of two, under 2,300 for any 64-bit range, a few
/// dozen in practice. Two sketches merge by adding counts, so a fold can be split anywhere
/// (docs/decisions/014-metrics.md). Integer arithmetic only: every process folding the same
/// records gets the same sketch, bit for bit.
public struct QuantileSketch: Equatable, Sendable {
    /// Samples added.
    public private(set) var count: Int64 = 0
    /// Their sum (exact).
    public private(set) var sum: Int64 = 0
    /// The smallest sample (0 when empty).
    public private(set) var minimum: Int64 = 0
    /// The largest sample (0 when empty).
    public private(set) var maximum: Int64 = 0
    /// Occupied buckets: bucket index → samples in it.
    private(set) var buckets: [Int: Int64] = [:]

    /// An empty sketch.
    public init() {}

    /// The bucket holding `value` (negative values count as 0).
    static func bucket(of value: Int64) -> Int {
        let value = max(0, value)
        if value < 128 { return Int(value) }
        let exponent = 63 - value.leadingZeroBitCount  // ≥ 7
        let shift = exponent - 6
        let sub = Int(value >> Int64(shift))  // 64...127
        return 128 + (shift - 1) * 64 + (sub - 64)
    }

    /// The smallest and largest value bucket `index` holds.
    static func range(ofBucket index: Int) -> (lower: Int64, upper: Int64) {
        if index < 128 { return (Int64(index), Int64(index)) }
        let shift = (index - 128) / 64 + 1
        let sub = Int64((index - 128) % 64 + 64)
        let lower = sub << Int64(shift)
        return (lower, ((sub + 1) << Int64(shift)) - 1)
    }

    /// Adds one sample.
    public mutating func add(_ value: Int64) {
        let value = max(0, value)
        minimum = count == 0 ? value : min(minimum, value)
        maximum = count == 0 ? value : max(maximum, value)
        count = count.saturatingAdd(1)
        sum &+= value
        buckets[Self.bucket(of: value)] = buckets[Self.bucket(of: value), default: 0].saturatingAdd(1)
    }

    /// Adds every sample of `other`.
    public mutating func merge(_ other: QuantileSketch) {
        guard other.count > 0 else { return }
        minimum = count == 0 ? other.minimum : min(minimum, other.minimum)
        maximum = count == 0 ? other.maximum : max(maximum, other.maximum)
        count = count.saturatingAdd(other.count)
        sum &+= other.sum
        for (index, samples) in other.buckets { buckets[index] = buckets[index, default: 0].saturatingAdd(samples) }
    }

    /// The `q`-quantile by nearest rank: the smallest sample with at least `ceil(q × count)`
    /// samples at or below it, as the middle of its bucket (clamped to the samples' range, so
    /// the minimum and maximum are exact). Nil when empty.
    public func quantile(_ q: Double) -> Int64? {
        guard count > 0 else { return nil }
        // In Double until clamped: q × count may not fit an Int64 when count is near its limit.
        let rank = (q * Double(count)).rounded(.up)
        let wanted = rank >= Double(count) ? count : max(1, Int64(max(0, rank)))
        var seen: Int64 = 0
        for index in buckets.keys.sorted() {
            seen = seen.saturatingAdd(buckets[index, default: 0])
            if seen >= wanted {
                let (lower, upper) = Self.range(ofBucket: index)
                return min(maximum, max(minimum, lower + (upper - lower) / 2))
            }
        }
        return maximum
    }

    /// The mean (nil when empty).
    public var mean: Double? { count == 0 ? nil : Double(sum) / Double(count) }

    /// `{"n":…,"sum":…,"min":…,"max":…,"b":[index,count,…]}` (buckets in index order).
    public var json: JSONValue {
        var flat: [JSONValue] = []
        flat.reserveCapacity(buckets.count * 2)
        for index in buckets.keys.sorted() {
            flat.append(.int(Int64(index)))
            flat.append(.int(buckets[index, default: 0]))
        }
        return .object([
            "b": .array(flat), "max": .int(maximum), "min": .int(minimum), "n": .int(count), "sum": .int(sum),
        ])
    }

    /// Reads `json`; nil when it is not a sketch.
    public init?(json: JSONValue) {
        guard let count = json["n"]?.intValue, let sum = json["sum"]?.intValue, let minimum = json["min"]?.intValue,
            let maximum = json["max"]?.intValue, let flat = json["b"]?.arrayValue, flat.count % 2 == 0
        else { return nil }
        var total: Int64 = 0
        var index = 0
        while index < flat.count {
            guard let bucket = flat[index].intValue, let samples = flat[index + 1].intValue, bucket >= 0,
                bucket <= Int64(Self.bucket(of: .max)), samples > 0, samples <= Limits.maximumCount
            else {
                return nil
            }
            buckets[Int(bucket), default: 0] += samples
            total += samples
            guard total <= Limits.maximumCount else { return nil }
            index += 2
        }
        guard total == count, minimum <= maximum, minimum >= 0 else { return nil }
        self.count = count
        self.sum = sum
        self.minimum = minimum
        self.maximum = maximum
    }
}
