/// What `purser serve` keeps beside the jobs: the project keys that scope every request, the files uploaded through
/// the OpenAI Files API, and the batches created through either provider's batch API (each a Purser job).

/// What a key may do in its project: read, or also upload and create batches, or also set budgets and read reports.
public enum KeyRole: String, Sendable, CaseIterable {
    case read, submit, admin

    public var maySubmit: Bool { self != .read }
    public var isAdmin: Bool { self == .admin }
}

/// A project key as stored: never the token, only its first characters (which name it) and its hash.
public struct ProjectKey: Sendable, Hashable {
    public var id: Int64
    public var project: String
    public var name: String
    public var role: KeyRole
    /// The token's first characters, shown in `keys list` and used to find the key's row.
    public var prefix: String
    public var createdAt: Int64
    public var revokedAt: Int64?

    package init(id: Int64, project: String, name: String, role: KeyRole, prefix: String, createdAt: Int64, revokedAt: Int64?) {
        self.id = id
        self.project = project
        self.name = name
        self.role = role
        self.prefix = prefix
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
}

/// A project token: `pk_` and 48 random hex digits. Made once, shown once; the database keeps its SHA-256.
public struct ProjectToken: Sendable {
    public let text: String

    public static let prefixLength = 12

    public init(text: String) { self.text = text }

    /// A new token from the system's random source.
    public static func make() -> ProjectToken {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<24).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return ProjectToken(text: "pk_" + SHA256.hex(bytes))
    }

    public var prefix: String { String(text.prefix(ProjectToken.prefixLength)) }
    public var sha256: String { SHA256.hex(of: Array(text.utf8)) }

    /// Whether `text` looks like a token at all (checked before any lookup, so nothing odd reaches the database).
    public var isWellFormed: Bool {
        text.utf8.count == 51 && text.hasPrefix("pk_") && text.utf8.dropFirst(3).allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
}

/// A file in the service: an upload, or a finished batch's output or error file.
public struct ServiceFile: Sendable, Hashable {
    public var id: String
    public var project: String
    public var filename: String
    public var purpose: String
    public var bytes: Int64
    public var sha256: String
    /// Where its bytes are, in the work folder beside the database.
    public var path: String
    public var createdAt: Int64
    public var expiresAt: Int64?

    public init(id: String, project: String, filename: String, purpose: String, bytes: Int64, sha256: String, path: String, createdAt: Int64, expiresAt: Int64?) {
        self.id = id
        self.project = project
        self.filename = filename
        self.purpose = purpose
        self.bytes = bytes
        self.sha256 = sha256
        self.path = path
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

/// Which API a batch was created through, and so how it is shown and what its results look like.
public enum BatchDialect: String, Sendable {
    case openai, anthropic
}

/// A batch's life, in OpenAI's words (Anthropic's three statuses are read from these).
public enum ServiceBatchStatus: String, Sendable, CaseIterable {
    case validating, failed
    case inProgress = "in_progress"
    case finalizing, completed, expired, cancelling, cancelled

    public var isEnded: Bool { [.failed, .completed, .expired, .cancelled].contains(self) }
}

/// A batch created through the service.
public struct ServiceBatch: Sendable, Hashable {
    /// Its place in creation order, for listing pages.
    public var seq: Int64
    public var id: String
    public var project: String
    public var dialect: BatchDialect
    public var status: ServiceBatchStatus
    public var jobID: Int64?
    public var inputFileID: String?
    public var endpoint: String
    public var completionWindow: String
    /// The create's metadata, as JSON text.
    public var metadata: String?
    /// Why validation failed: the OpenAI `errors.data` list, as JSON text.
    public var errors: String?
    public var outputFileID: String?
    public var errorFileID: String?
    public var createdAt: Int64
    public var inProgressAt: Int64?
    public var finalizingAt: Int64?
    public var endedAt: Int64?
    public var cancellingAt: Int64?

    public init(
        seq: Int64 = 0, id: String, project: String, dialect: BatchDialect, status: ServiceBatchStatus, jobID: Int64? = nil, inputFileID: String?,
        endpoint: String, completionWindow: String, metadata: String?, errors: String? = nil, outputFileID: String? = nil, errorFileID: String? = nil,
        createdAt: Int64, inProgressAt: Int64? = nil, finalizingAt: Int64? = nil, endedAt: Int64? = nil, cancellingAt: Int64? = nil
    ) {
        self.seq = seq
        self.id = id
        self.project = project
        self.dialect = dialect
        self.status = status
        self.jobID = jobID
        self.inputFileID = inputFileID
        self.endpoint = endpoint
        self.completionWindow = completionWindow
        self.metadata = metadata
        self.errors = errors
        self.outputFileID = outputFileID
        self.errorFileID = errorFileID
        self.createdAt = createdAt
        self.inProgressAt = inProgressAt
        self.finalizingAt = finalizingAt
        self.endedAt = endedAt
        self.cancellingAt = cancellingAt
    }
}
