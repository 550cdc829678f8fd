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
    /// The shape of the provider's batch API, or nil when Purser cannot send it batches: `openai` (a JSONL file
    /// uploaded to `/files`, then `/batches`) or `anthropic` (`/v1/messages/batches` with the requests inline).
    public var batchDialect: Dialect?
    /// `ca_file`: a PEM file of the certificate authorities that vouch for the provider's TLS certificate, in place of
    /// the system's (a gateway with a private authority); nil for the system's.
    public var certificateAuthorities: String?

    public init(
        name: String, dialect: Dialect, baseURL: String, apiKeyEnvironmentVariable: String, batchDialect: Dialect? = nil,
        certificateAuthorities: String? = nil
    ) {
        self.name = name
        self.dialect = dialect
        self.baseURL = baseURL
        self.apiKeyEnvironmentVariable = apiKeyEnvironmentVariable
        self.batchDialect = batchDialect
        self.certificateAuthorities = certificateAuthorities
    }

    /// True when the key's variable is set and not empty. The key itself is never kept.
    public func hasKey(in environment: [String: String]) -> Bool {
        !(environment[apiKeyEnvironmentVariable] ?? "").isEmpty
    }
}
