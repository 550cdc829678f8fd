import PurserCore

/// A refusal, rendered in the shape of the API the request came to: OpenAI's `{"error":{message,type,param,code}}`
/// or Anthropic's `{"type":"error","error":{type,message},"request_id"}`, with the status each SDK maps to its class.
struct APIError: Error {
    var status: Int
    var type: String
    var message: String
    var param: String?
    var code: String?

    static func invalid(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: 400, type: "invalid_request_error", message: message, param: param, code: code)
    }

    static func notFound(_ message: String, code: String) -> APIError {
        APIError(status: 404, type: "invalid_request_error", message: message, param: nil, code: code)
    }

    static let unauthenticated = APIError(
        status: 401, type: "authentication_error",
        message: "Missing or unknown project key: send one as 'Authorization: Bearer KEY' or 'x-api-key: KEY' (purser keys create --project NAME makes one).",
        param: nil, code: "invalid_api_key")

    static func forbidden(_ message: String) -> APIError {
        APIError(status: 403, type: "permission_error", message: message, param: nil, code: "insufficient_role")
    }

    static func internalError(_ message: String) -> APIError {
        APIError(status: 500, type: "server_error", message: message, param: nil, code: nil)
    }

    /// Anthropic's error type for a status.
    var anthropicType: String {
        switch status {
        case 400, 413, 415, 422: status == 413 ? "request_too_large" : "invalid_request_error"
        case 401: "authentication_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 429: "rate_limit_error"
        case 503, 529: "overloaded_error"
        default: "api_error"
        }
    }

    func response(anthropic: Bool, requestID: String) -> HTTPResponse {
        let body: JSONObject
        if anthropic {
            body = JSONObject([
                "type": .string("error"),
                "error": .object(JSONObject(["type": .string(anthropicType), "message": .string(message)])),
                "request_id": .string(requestID),
            ])
        } else {
            body = JSONObject(["error": .object(JSONObject([
                "message": .string(message), "type": .string(type), "param": param.map(JSONValue.string) ?? .null, "code": code.map(JSONValue.string) ?? .null,
            ]))])
        }
        // A refusal that a retry cannot change is marked so, or the SDKs retry 409s and 5xx for nothing.
        var headers: [(String, String)] = []
        if status == 429 || status == 503 {
            headers.append(("retry-after", "1"))
        } else if status < 500 && status != 408 {
            headers.append(("x-should-retry", "false"))
        }
        return .json(status, JSONWriter.string(.object(body)), headers: headers)
    }
}

/// Reading a request's body for the APIs: its read failures (too large, too slow, cut short) and a body that is not
/// the JSON object asked for become the API's own refusals, saying where the JSON stops being JSON.
extension APIError {
    init(_ failure: HTTPFailure, param: String? = nil) {
        self.init(status: failure.status == 0 ? 400 : failure.status, type: "invalid_request_error", message: failure.message, param: param, code: nil)
    }

    static func bodyBytes(_ body: HTTPBody) throws -> [UInt8] {
        do { return try body.readAll() } catch let failure as HTTPFailure { throw APIError(failure) }
    }

    /// The body as a JSON object; `expected` says what it should be, for the refusal.
    static func jsonObject(_ bytes: [UInt8], expected: String, param: String? = nil) throws -> JSONObject {
        let value: JSONValue
        do { value = try JSONParser.parse(bytes) } catch {
            throw APIError.invalid("The request body is not JSON (byte \(error.column): \(error.reason)); it must be \(expected).", param: param)
        }
        guard let object = value.objectValue else { throw APIError.invalid("The request body is \(value.kindName), not \(expected).", param: param) }
        return object
    }
}
