import Foundation

/// An endpoint Purser can call: its wire dialect, base URL and the environment variable holding its key.
public struct Provider: Sendable, Hashable {
    public enum Dialect: String, Sendable, CaseIterable {
        case openai, anthropic
    }

    public var name: String
    public var dialect: Dialect
    public var baseURL: String
    public var apiKeyEnvironmentVariable: String
    public var offersBatchAPI: Bool

    public init(name: String, dialect: Dialect, baseURL: String, apiKeyEnvironmentVariable: String, offersBatchAPI: Bool) {
        self.name = name
        self.dialect = dialect
        self.baseURL = baseURL
        self.apiKeyEnvironmentVariable = apiKeyEnvironmentVariable
        self.offersBatchAPI = offersBatchAPI
    }

    /// True when the key's variable is set and not empty. The key itself is never kept.
    public func hasKey(in environment: [String: String]) -> Bool {
        !(environment[apiKeyEnvironmentVariable] ?? "").isEmpty
    }
}
