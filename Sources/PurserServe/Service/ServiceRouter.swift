import Foundation
import PurserCore
import PurserSQLite

/// Answers every request to `purser serve`: finds the caller's project key, sends the request to the API it speaks,
/// and turns every refusal into that API's error shape. Another project's ids are simply not found (404).
final class ServiceRouter: HTTPHandler, @unchecked Sendable {
    let context: ServiceContext
    let openAI: OpenAIAPI
    let anthropic: AnthropicAPI
    let purser: PurserAPI
    let log: @Sendable (String) -> Void

    init(context: ServiceContext, origin: @escaping @Sendable (String?) -> String, live: @escaping @Sendable () -> LiveFigures, log: @escaping @Sendable (String) -> Void) {
        self.context = context
        openAI = OpenAIAPI(context: context)
        anthropic = AnthropicAPI(context: context, origin: origin)
        purser = PurserAPI(context: context, live: live)
        self.log = log
    }

    static func isAnthropic(_ request: HTTPRequest?) -> Bool { request?.path.hasPrefix("/v1/messages") == true }

    func bodyLimit(for request: HTTPRequest) -> Int64 {
        switch (request.method, request.path) {
        case ("POST", "/v1/files"): context.maximumUploadBytes + (1 << 20)
        case ("POST", "/v1/messages/batches"): context.maximumInlineBatchBytes
        default: 1 << 20
        }
    }

    func failed(_ failure: HTTPFailure, request: HTTPRequest?) -> HTTPResponse {
        APIError(status: failure.status, type: failure.status == 503 ? "server_error" : "invalid_request_error", message: failure.message)
            .response(anthropic: ServiceRouter.isAnthropic(request), requestID: request?.id ?? "-")
    }

    func respond(to request: HTTPRequest, body: HTTPBody) -> HTTPResponse {
        do {
            return try route(request, body)
        } catch let error as APIError {
            return error.response(anthropic: ServiceRouter.isAnthropic(request), requestID: request.id)
        } catch {
            // Said in the log with the request's id; the client gets the id, not the database's words.
            log("error: \(request.method) \(request.path) (\(request.id)): \(error)")
            return APIError.internalError("The server could not answer this request (\(request.id)); it is in the server's log.")
                .response(anthropic: ServiceRouter.isAnthropic(request), requestID: request.id)
        }
    }

    private func route(_ request: HTTPRequest, _ body: HTTPBody) throws -> HTTPResponse {
        let parts = request.segments
        switch parts.first {
        case "healthz" where parts.count == 1:
            return .json(200, #"{"status":"ok"}"#)
        case nil, "login", "logout", "dashboard.json":
            return try purser.dashboardRoute(request, body)
        case "metrics" where parts.count == 1:
            return try purser.metrics(key: try admin(try key(request)))
        case "v1":
            let key = try key(request)
            switch parts.count > 1 ? parts[1] : "" {
            case "files", "batches": return try openAI.route(request, body, key: key)
            case "messages" where parts.count > 2 && parts[2] == "batches": return try anthropic.route(request, body, key: key)
            case "purser": return try purser.route(request, body, key: key)
            default: break
            }
        default: break
        }
        throw APIError(status: 404, type: "invalid_request_error", message: "Unknown request URL: \(request.method) \(request.path)", code: "unknown_url")
    }

    /// The live key a request carries, as `Authorization: Bearer KEY` (OpenAI) or `x-api-key: KEY` (Anthropic).
    func key(_ request: HTTPRequest) throws -> ProjectKey {
        var text = request.header("x-api-key")
        if text == nil, let authorization = request.header("authorization"), authorization.lowercased().hasPrefix("bearer ") {
            text = String(authorization.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        }
        guard let text, let key = try context.withStore({ try $0.service.key(for: ProjectToken(text: text)) }) else { throw APIError.unauthenticated }
        return key
    }

    func admin(_ key: ProjectKey) throws -> ProjectKey {
        guard key.role.isAdmin else { throw APIError.forbidden("This needs an admin key of the project (purser keys create --project P --role admin).") }
        return key
    }
}
