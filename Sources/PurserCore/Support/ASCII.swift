extension UInt8 {
    /// A letter or digit of ASCII: what names and host names that need no quoting are made of.
    public var isASCIIAlphanumeric: Bool { (48...57).contains(self) || (65...90).contains(self) || (97...122).contains(self) }

    /// The byte with an ASCII capital made small; any other byte as it is.
    var asciiLowercased: UInt8 { (65...90).contains(self) ? self + 32 : self }
}

extension String {
    /// Whether the two are the same but for the case of ASCII letters (header names), without Foundation's comparison.
    func equalsIgnoringASCIICase(_ other: String) -> Bool {
        guard utf8.count == other.utf8.count else { return false }
        return zip(utf8, other.utf8).allSatisfy { $0.asciiLowercased == $1.asciiLowercased }
    }
}
