extension UInt8 {
    /// A letter or digit of ASCII: what names and host names that need no quoting are made of.
    public var isASCIIAlphanumeric: Bool { (48...57).contains(self) || (65...90).contains(self) || (97...122).contains(self) }
}
