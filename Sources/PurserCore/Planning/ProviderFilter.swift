/// The providers a request may go to, for teams whose data policy allows only some (OpenRouter's
/// `provider.only` / `provider.ignore`): `{"only": [...], "ignore": [...]}` on a line, or `--only-providers` /
/// `--ignore-providers` on submit. Honoured wherever the request can go: the plan, fallbacks, batches.
public struct ProviderFilter: Sendable, Hashable {
    /// When set, the only providers allowed.
    public var only: [String]?
    public var ignore: [String]

    public init(only: [String]?, ignore: [String]) {
        self.only = only.map { Array(Set($0)).sorted() }
        self.ignore = Array(Set(ignore)).sorted()
    }

    public func allows(_ provider: String) -> Bool {
        if let only, !only.contains(provider) { return false }
        return !ignore.contains(provider)
    }

    /// As stored with the request.
    public var json: String {
        var object = JSONObject(["ignore": .array(ignore.map { .string($0) })])
        if let only { object["only"] = .array(only.map { .string($0) }) }
        return JSONWriter.string(.object(object))
    }

    /// The filter stored with a request; nil for none. Text that does not read as one is an error, never "no
    /// restriction": a request must not reach a provider its filter excluded because the database was damaged.
    public static func stored(_ text: String?) throws -> ProviderFilter? {
        guard let text else { return nil }
        guard let object = (try? JSONParser.parse(text))?.objectValue else {
            throw Problem("a request's stored provider filter does not read as one (\(text.prefix(60))); the database may be damaged")
        }
        return ProviderFilter(only: object["only"]?.arrayValue?.compactMap(\.stringValue), ignore: object["ignore"]?.arrayValue?.compactMap(\.stringValue) ?? [])
    }

    /// The filter a line's `providers` value gives, merged with the submit's (both must allow a provider), or why it
    /// cannot be read. Every name must be a provider of the tables.
    public static func parse(_ value: JSONValue?, submitted: ProviderFilter?, known: Set<String>) -> Result<ProviderFilter?, Problem> {
        guard let value else { return .success(submitted) }
        guard let object = value.objectValue, object.keys.allSatisfy({ $0 == "only" || $0 == "ignore" }) else {
            return .failure(Problem("providers must be an object with \"only\" and/or \"ignore\", each a list of provider names, such as {\"only\": [\"anthropic\"]}"))
        }
        func names(_ key: String) -> Result<[String]?, Problem> {
            guard let list = object[key] else { return .success(nil) }
            guard let array = list.arrayValue, array.allSatisfy({ $0.stringValue != nil }) else {
                return .failure(Problem("providers.\(key) must be a list of provider names"))
            }
            let names = array.compactMap(\.stringValue)
            if let unknown = names.first(where: { !known.contains($0) }) {
                return .failure(Problem("providers.\(key) names \(JSONWriter.quotedForMessage(unknown)), which is not a provider of the tables; use \(known.sorted().joined(separator: ", "))"))
            }
            return .success(names)
        }
        let only: [String]?, ignore: [String]?
        switch (names("only"), names("ignore")) {
        case (.failure(let problem), _), (_, .failure(let problem)): return .failure(problem)
        case (.success(let first), .success(let second)): (only, ignore) = (first, second)
        }
        return .success(ProviderFilter(only: only, ignore: ignore ?? []).merged(with: submitted))
    }

    /// Both filters at once: a provider must pass each.
    func merged(with other: ProviderFilter?) -> ProviderFilter {
        guard let other else { return self }
        let only: [String]? = switch (self.only, other.only) {
        case (let mine?, let theirs?): mine.filter(theirs.contains)
        case (let mine?, nil): mine
        case (nil, let theirs?): theirs
        case (nil, nil): nil
        }
        return ProviderFilter(only: only, ignore: ignore + other.ignore)
    }
}
