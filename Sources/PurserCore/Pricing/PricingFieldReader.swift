/// Reads the members of one JSON object in a pricing file, recording a problem for every missing,
/// mistyped or unknown key instead of stopping at the first.
struct PricingFieldReader {
    let file: String
    let path: String
    let object: JSONObject
    private(set) var readKeys: Set<String> = []
    var problems: [PricingProblem] = []

    init(file: String, path: String, object: JSONObject) {
        self.file = file
        self.path = path
        self.object = object
    }

    /// Reads `value` as an object, or records that it is not one.
    static func object(_ value: JSONValue, file: String, path: String, problems: inout [PricingProblem]) -> PricingFieldReader? {
        guard let object = value.objectValue else {
            problems.append(PricingProblem(file: file, key: path, message: "expected an object, found \(value.kindName)"))
            return nil
        }
        return PricingFieldReader(file: file, path: path, object: object)
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    mutating func problem(_ key: String, _ message: String) {
        problems.append(PricingProblem(file: file, key: keyPath(key), message: message))
    }

    mutating func value(_ key: String, required: Bool) -> JSONValue? {
        readKeys.insert(key)
        guard let value = object[key], !value.isNull else {
            if required { problem(key, "missing; add it") }
            return nil
        }
        return value
    }

    mutating func string(_ key: String, required: Bool = true) -> String? {
        guard let value = value(key, required: required) else { return nil }
        guard let text = value.stringValue, !text.isEmpty else {
            problem(key, "expected a non-empty string, found \(value.kindName)")
            return nil
        }
        return text
    }

    mutating func integer(_ key: String, required: Bool = true, minimum: Int = 0, maximum: Int = Int(Int32.max)) -> Int? {
        guard let value = value(key, required: required) else { return nil }
        guard let number = value.intValue else {
            problem(key, "expected a whole number, found \(value.numberText.map(DecimalText.shown) ?? value.kindName)")
            return nil
        }
        guard number >= minimum else {
            problem(key, "must be at least \(minimum), found \(number)")
            return nil
        }
        guard number <= maximum else {
            problem(key, "must be at most \(maximum), found \(number)")
            return nil
        }
        return number
    }

    mutating func bool(_ key: String, required: Bool = true) -> Bool? {
        guard let value = value(key, required: required) else { return nil }
        guard let flag = value.boolValue else {
            problem(key, "expected true or false, found \(value.kindName)")
            return nil
        }
        return flag
    }

    /// A decimal written as a JSON number or a string, kept exact.
    mutating func decimalText(_ key: String, required: Bool = true) -> String? {
        guard let value = value(key, required: required) else { return nil }
        if let text = value.numberText ?? value.stringValue { return text }
        problem(key, "expected a decimal number, found \(value.kindName)")
        return nil
    }

    mutating func price(_ key: String, required: Bool = true) -> TokenPrice? {
        guard let text = decimalText(key, required: required) else { return nil }
        do {
            let price = try TokenPrice(usdPerMillion: text)
            guard price.microUSDPerMillion >= 0 else {
                problem(key, "negative price \(DecimalText.shown(text)); prices are USD per million tokens, zero or more")
                return nil
            }
            guard price <= TokenPrice.maximum else {
                problem(key, "price \(DecimalText.shown(text)) is above \(TokenPrice.maximum.usdPerMillionText) USD per million tokens, the most Purser accepts")
                return nil
            }
            return price
        } catch {
            problem(key, "\(error) (prices are USD per million tokens, to at most 6 decimal places)")
            return nil
        }
    }

    mutating func child(_ key: String, required: Bool = true) -> PricingFieldReader? {
        guard let value = value(key, required: required) else { return nil }
        return PricingFieldReader.object(value, file: file, path: keyPath(key), problems: &problems)
    }

    /// Records every member that nothing read: a misspelt key is an error, never ignored.
    mutating func finish(into problems: inout [PricingProblem]) {
        for key in object.keys where !readKeys.contains(key) {
            let known = readKeys.sorted().joined(separator: ", ")
            self.problems.append(PricingProblem(file: file, key: keyPath(key), message: "unknown key; known keys here: \(known)"))
        }
        problems.append(contentsOf: self.problems)
    }

    /// Merges a finished child's problems.
    mutating func absorb(_ child: inout PricingFieldReader) {
        child.finish(into: &problems)
    }
}
