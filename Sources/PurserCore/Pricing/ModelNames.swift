/// Model names as users write them. Providers publish dated snapshots beside each model's name
/// (OpenAI: `gpt-4o-2024-08-06`, `gpt-3.5-turbo-0125`, https://platform.openai.com/docs/models; Anthropic:
/// `claude-sonnet-4-5-20250929`, https://docs.anthropic.com/en/docs/about-claude/models/overview) and `-latest`
/// names that follow the newest snapshot; a name with such a suffix is looked up without it as well.
public enum ModelNames {
    /// `name` without its snapshot suffix (`-2024-08-06`, `-20250929`, `-0125`) or `-latest`, nearest first; empty
    /// when it has none.
    public static func undated(_ name: String) -> [String] {
        var bases: [String] = []
        var rest = Substring(name)
        while let stripped = strippedSuffix(rest), !stripped.isEmpty {
            bases.append(String(stripped))
            rest = stripped
        }
        return bases
    }

    private static func strippedSuffix(_ name: Substring) -> Substring? {
        if name.hasSuffix("-latest") { return name.dropLast("-latest".count) }
        let parts = name.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 2 else { return nil }
        func digits(_ part: Substring, _ count: Int) -> Bool { part.count == count && part.allSatisfy(\.isASCII) && part.allSatisfy(\.isNumber) }
        // -YYYY-MM-DD
        if parts.count >= 4, digits(parts[parts.count - 3], 4), digits(parts[parts.count - 2], 2), digits(parts[parts.count - 1], 2) {
            return name.dropLast(11)
        }
        // -YYYYMMDD, or OpenAI's -MMDD
        if let last = parts.last, digits(last, 8) || digits(last, 4) { return name.dropLast(last.count + 1) }
        return nil
    }
}
