import Foundation
import PurserCore
import Synchronization

// purser-fake-provider: a local stand-in for OpenAI- and Anthropic-dialect endpoints, bound to 127.0.0.1,
// for Purser's integration tests and benchmark. Faults are injected at chosen rates, decided per call
// from a seed so runs repeat. It stops by itself after --max-seconds or --max-requests.
//
//   POST /v1/chat/completions, /chat/completions   openai dialect
//   POST /v1/messages                              anthropic dialect
//   --cache automatic|explicit [--cache-min N] [--cache-step N]: a prompt cache per model as the providers keep one
//   (the simulator's: matched at content-block boundaries, Anthropic's only at cache_control breakpoints, readable once
//   the answer that wrote it has begun), reported in each dialect's usage fields.
//   GET  /stats                                    calls in all and per X-Purser-Request id, early retries, most calls at once,
//                                                  batches created, batch lines per custom_id, files uploaded, and how many
//                                                  requests carried a credential (Authorization or x-api-key)
//   OpenAI batches: POST /v1/files (multipart), GET /v1/files, GET /v1/files/{id}/content, POST /v1/batches,
//                   GET /v1/batches[/{id}], POST /v1/batches/{id}/cancel
//   Anthropic:      POST /v1/messages/batches, GET /v1/messages/batches[/{id}[/results]], POST .../{id}/cancel
//
// Hostile faults, to prove credentials stay on their origin: --redirect WHAT --redirect-to URL answers WHAT (a comma
// list of live, create, poll, download, cancel, or all) with a 307 to URL; --results-url relative|foreign; --echo-key puts the caller's key in
// every error message. --host 127.0.0.2 makes a second listener ("another origin") that counts what reaches it.
//
// Prints "listening on HOST:PORT" once ready.

struct Settings: Sendable {
    var port: UInt16 = 0
    var latencyMilliseconds = 0
    var fail5xx = 0.0, fail429 = 0.0, fail529 = 0.0, hang = 0.0, drop = 0.0, malformed = 0.0
    var retryAfterSeconds = 1
    var hangSeconds = 30
    var authFail = false, quotaFail = false
    var refuseModel: String?
    /// Every call naming this model is answered 429 with `--retry-after`.
    var rateLimitModel: String?
    var seed: UInt64 = 1
    var maxRequests = 1_000_000
    var maxSeconds = 300
    /// Batches: how long one takes to end, the share of lines that error (500) or expire, whether every
    /// OpenAI batch fails validation, whether batches never end (until cancelled), how long a cancel takes.
    var batchDelayMilliseconds = 500
    var batchFailLines = 0.0, batchExpireLines = 0.0
    var batchValidationFail = false
    var batchNeverEnds = false
    var batchCancelMilliseconds = 200
    /// A status every batch create (or every look at one batch) answers with, to test refusals.
    var batchCreateFail: Int?
    var batchStatusFail: Int?
    var host = "127.0.0.1"
    /// Which calls answer with a redirect to `redirectTo`: live, create, download or all.
    var redirect: String?
    var redirectTo = ""
    /// How Anthropic results URLs are written: absolute on this host (nil), relative, or on another origin.
    var resultsURL: String?
    var foreignOrigin = "http://127.0.0.2:9"
    var echoKey = false
    /// Results faults: one line cut short, successful lines with usage no one can read, no GET /v1/files (405).
    var cutResultsLine = false
    var unreadableUsage = false
    var noFilesList = false
    /// Prompt caching as a provider keeps it: automatic (OpenAI's) or explicit (Anthropic's breakpoints), from
    /// `cacheMinimum` tokens in steps of `cacheStep`; nil caches nothing.
    var cacheMode: CachingRule.Mode?
    var cacheMinimum = 1_024
    var cacheStep: Int?

    init(_ arguments: [String]) {
        var index = 0
        func next() -> String { index += 1; return index < arguments.count ? arguments[index] : "" }
        while index < arguments.count {
            switch arguments[index] {
            case "--port": port = UInt16(next()) ?? 0
            case "--latency-ms": latencyMilliseconds = Int(next()) ?? 0
            case "--fail-5xx": fail5xx = Double(next()) ?? 0
            case "--fail-429": fail429 = Double(next()) ?? 0
            case "--fail-529": fail529 = Double(next()) ?? 0
            case "--hang": hang = Double(next()) ?? 0
            case "--drop": drop = Double(next()) ?? 0
            case "--malformed": malformed = Double(next()) ?? 0
            case "--retry-after": retryAfterSeconds = Int(next()) ?? 1
            case "--hang-seconds": hangSeconds = Int(next()) ?? 30
            case "--auth-fail": authFail = true
            case "--quota-fail": quotaFail = true
            case "--refuse-model": refuseModel = next()
            case "--rate-limit-model": rateLimitModel = next()
            case "--seed": seed = UInt64(next()) ?? 1
            case "--max-requests": maxRequests = Int(next()) ?? maxRequests
            case "--max-seconds": maxSeconds = Int(next()) ?? maxSeconds
            case "--batch-delay-ms": batchDelayMilliseconds = Int(next()) ?? batchDelayMilliseconds
            case "--batch-fail-lines": batchFailLines = Double(next()) ?? 0
            case "--batch-expire-lines": batchExpireLines = Double(next()) ?? 0
            case "--batch-validation-fail": batchValidationFail = true
            case "--batch-never-ends": batchNeverEnds = true
            case "--batch-cancel-ms": batchCancelMilliseconds = Int(next()) ?? batchCancelMilliseconds
            case "--batch-create-fail": batchCreateFail = Int(next())
            case "--batch-status-fail": batchStatusFail = Int(next())
            case "--host": host = next()
            case "--redirect": redirect = next()
            case "--redirect-to": redirectTo = next()
            case "--results-url": resultsURL = next()
            case "--foreign-origin": foreignOrigin = next()
            case "--echo-key": echoKey = true
            case "--cut-results-line": cutResultsLine = true
            case "--unreadable-usage": unreadableUsage = true
            case "--no-files-list": noFilesList = true
            case "--cache": cacheMode = CachingRule.Mode(rawValue: next())
            case "--cache-min": cacheMinimum = Int(next()) ?? cacheMinimum
            case "--cache-step": cacheStep = Int(next())
            default:
                FileHandle.standardError.write(Data("purser-fake-provider: unknown option \(arguments[index])\n".utf8))
                exit(64)
            }
            index += 1
        }
    }
}

extension Settings {
    /// A model named `name` caching as `--cache` says (for the simulator's cache, which keeps one per model), or nil when
    /// the fake caches nothing. Its batches cache on a best-effort basis, as the providers' do.
    func cachingModel(_ name: String) -> Model? {
        guard let mode = cacheMode else { return nil }
        let step = cacheStep ?? (mode == .automatic ? 128 : 1)
        var model = Model(
            id: "fake/\(name)", provider: "fake", providerModel: name,
            prices: TokenPrices(input: TokenPrice(microUSDPerMillion: 2), output: TokenPrice(microUSDPerMillion: 2), cachedInput: TokenPrice(microUSDPerMillion: 1)),
            contextWindow: 1_000_000, maxOutputTokens: 1_000, quality: 50, qualitySource: "fake",
            rateLimits: RateLimits(requestsPerMinute: 1, tokensPerMinute: 1), speed: Speed(timeToFirstTokenMilliseconds: 1, outputTokensPerSecond: 1),
            priceDate: "2026-12-06", priceSource: "https://example.com")
        model.caching = CachingRule(
            mode: mode, minimumPrefixTokens: cacheMinimum, stepTokens: min(step, cacheMinimum), batch: .bestEffort, source: "https://example.com")
        return model
    }

    /// A request body as the fake's cache reads it; nil when it is not a JSON object, which then caches nothing (the
    /// answer itself is made without it).
    static func cacheableBody(_ bytes: [UInt8]) -> JSONObject? {
        do { return try JSONParser.parse(bytes).objectValue } catch { return nil }
    }
}

/// Counts shared by the connection threads.
final class Ledger: Sendable {
    struct State {
        var calls = 0
        var byRequest: [String: Int] = [:]
        var successes: [String: Int] = [:]
        var notBefore: [String: Date] = [:]
        var earlyRetries = 0
        var inFlight = 0
        var peakInFlight = 0
        var batchesCreated = 0
        var filesUploaded = 0
        /// Lines submitted in batches, per custom_id: more than one means a request was sent twice.
        var batchLines: [String: Int] = [:]
        /// Requests of any kind, and those that carried a credential.
        var requests = 0
        var withCredentials = 0
    }

    let state = Mutex(State())

    /// Records a call; returns its number for this request id (1 for the first).
    func record(_ request: String) -> (total: Int, forRequest: Int) {
        state.withLock { state in
            state.calls += 1
            state.byRequest[request, default: 0] += 1
            if let notBefore = state.notBefore[request], Date() < notBefore.addingTimeInterval(-0.05) { state.earlyRetries += 1 }
            state.notBefore[request] = nil
            return (state.calls, state.byRequest[request]!)
        }
    }

    func retryNotBefore(_ request: String, seconds: Int) {
        state.withLock { $0.notBefore[request] = Date().addingTimeInterval(Double(seconds)) }
    }

    func succeeded(_ request: String) { state.withLock { $0.successes[request, default: 0] += 1 } }

    /// Counts a call being answered, for the most calls ever answered at once.
    func began() {
        state.withLock { state in
            state.inFlight += 1
            state.peakInFlight = max(state.peakInFlight, state.inFlight)
        }
    }

    func ended() { state.withLock { $0.inFlight -= 1 } }

    var statsJSON: String {
        state.withLock { state in
            func object(_ counts: [String: Int]) -> String {
                "{" + counts.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
            }
            return "{\"calls\":\(state.calls),\"early_retries\":\(state.earlyRetries),\"peak_in_flight\":\(state.peakInFlight),\"by_request\":\(object(state.byRequest)),\"successes\":\(object(state.successes)),\"batches_created\":\(state.batchesCreated),\"files_uploaded\":\(state.filesUploaded),\"batch_lines\":\(object(state.batchLines)),\"requests\":\(state.requests),\"with_credentials\":\(state.withCredentials)}"
        }
    }
}

/// Answers calls on accepted connections; one thread per connection.
final class Server: Sendable {
    let settings: Settings
    let ledger = Ledger()
    let batches: FakeBatches
    let cache = SimulatedCache()

    /// What a live call reads from the fake's prompt cache and writes to it, in tokens, scaled to the fake's own count
    /// of the body's input (a quarter of its bytes).
    func cacheUse(body: [UInt8], anthropic: Bool, model name: String, input: Int) -> (read: Int, written: Int) {
        guard let model = settings.cachingModel(name), let object = Settings.cacheableBody(body) else { return (0, 0) }
        let prefix = PromptPrefix(body: object, dialect: anthropic ? .anthropic : .openai)
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        return cache.use(model: model, provider: "fake", prefix: prefix, now: now, answerBegins: now + Int64(settings.latencyMilliseconds), speedup: 1)
            .reported(input: input, step: model.caching?.stepTokens ?? 1)
    }

    init(settings: Settings) {
        self.settings = settings
        batches = FakeBatches(settings: settings, ledger: ledger)
    }

    /// A seeded draw in [0, 1) for one call of one request, so the same run injects the same faults.
    func draw(_ request: String, _ call: Int, _ salt: UInt64) -> Double {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325 ^ settings.seed ^ (salt &* 0x9E37_79B9_7F4A_7C15)
        for byte in request.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        hash = (hash ^ UInt64(call)) &* 0x0000_0100_0000_01B3
        hash ^= hash >> 29
        hash = hash &* 0xBF58_476D_1CE4_E5B9
        hash ^= hash >> 32
        return Double(hash % 1_000_000) / 1_000_000
    }

    func send(_ descriptor: Int32, status: Int, reason: String, body: String, headers: [String] = []) {
        let connection = headers.contains { $0.hasPrefix("Connection:") } ? "" : "Connection: keep-alive\r\n"
        var text = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\(connection)"
        for header in headers { text += header + "\r\n" }
        text += "\r\n" + body
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if count <= 0 { return }
            written += count
        }
    }

    func answer(method: String, path: String, headers: [String: String], body: [UInt8], descriptor: Int32) -> Bool {
        if path == "/stats" {
            send(descriptor, status: 200, reason: "OK", body: ledger.statsJSON, headers: ["Connection: close"])
            return false
        }
        ledger.state.withLock { state in
            state.requests += 1
            if headers["authorization"] != nil || headers["x-api-key"] != nil { state.withCredentials += 1 }
        }
        if let redirect = settings.redirect.map({ Set($0.split(separator: ",").map(String.init)) }) {
            let route = path.split(separator: "?").first.map(String.init) ?? path
            let kinds: [String: Bool] = [
                "live": method == "POST" && (route.hasSuffix("/messages") || route.hasSuffix("/chat/completions")),
                "create": method == "POST" && (route.hasSuffix("/batches") || route.hasSuffix("/files")),
                "poll": method == "GET" && (route.contains("/batches/") || route.hasSuffix("/files")) && !route.hasSuffix("/results"),
                "download": method == "GET" && (route.hasSuffix("/content") || route.hasSuffix("/results")),
                "cancel": method == "POST" && route.hasSuffix("/cancel"),
            ]
            if redirect.contains("all") || kinds.contains(where: { redirect.contains($0.key) && $0.value }) {
                send(descriptor, status: 307, reason: "Temporary Redirect", body: "", headers: ["Location: \(settings.redirectTo)\(path)"])
                return true
            }
        }
        if let reply = batches.answer(method: method, path: path, headers: headers, body: body) {
            send(descriptor, status: reply.status, reason: reply.status == 200 ? "OK" : "Error", body: reply.body, headers: reply.headers)
            return true
        }
        let anthropic = path.hasSuffix("/messages")
        guard anthropic || path.hasSuffix("/chat/completions") else {
            send(descriptor, status: 404, reason: "Not Found", body: "{\"error\":{\"message\":\"no route \(path)\"}}")
            return true
        }
        let request = headers["x-purser-request"] ?? "unknown"
        let key = headers["x-api-key"] ?? headers["authorization"].map { String($0.dropFirst("Bearer ".count)) } ?? ""
        func fault(_ message: String) -> String { settings.echoKey ? "\(message) (key \(key))" : message }
        let (total, call) = ledger.record(request)
        ledger.began()
        defer { ledger.ended() }
        if total >= settings.maxRequests { exit(0) }
        if settings.latencyMilliseconds > 0 { usleep(useconds_t(settings.latencyMilliseconds * 1000)) }
        if settings.authFail {
            send(descriptor, status: 401, reason: "Unauthorized", body: "{\"error\":{\"message\":\"\(fault("Incorrect API key provided"))\",\"type\":\"invalid_request_error\"}}")
            return true
        }
        if settings.quotaFail {
            send(descriptor, status: 429, reason: "Too Many Requests", body: "{\"error\":{\"message\":\"You exceeded your current quota\",\"type\":\"insufficient_quota\",\"code\":\"insufficient_quota\"}}")
            return true
        }
        let text = String(decoding: body, as: UTF8.self)
        if let refused = settings.refuseModel, text.contains("\"model\":\"\(refused)\"") {
            send(descriptor, status: 400, reason: "Bad Request", body: "{\"error\":{\"message\":\"This model's maximum context length is 8192 tokens\",\"code\":\"context_length_exceeded\"}}")
            return true
        }
        if let limited = settings.rateLimitModel, text.contains("\"model\":\"\(limited)\"") {
            send(descriptor, status: 429, reason: "Too Many Requests", body: "{\"error\":{\"message\":\"Rate limit reached for \(limited)\",\"type\":\"rate_limit_error\"}}",
                headers: ["Retry-After:   \(settings.retryAfterSeconds)  "])
            return true
        }
        // One fault at most per call, tried in a fixed order with independent draws.
        if draw(request, call, 1) < settings.hang {
            sleep(UInt32(settings.hangSeconds))
            return false
        }
        if draw(request, call, 2) < settings.drop { return false }
        if draw(request, call, 3) < settings.fail5xx {
            send(descriptor, status: 500, reason: "Internal Server Error", body: "{\"error\":{\"message\":\"\(fault("fake server error"))\",\"type\":\"server_error\"}}")
            return true
        }
        if draw(request, call, 4) < settings.fail429 {
            ledger.retryNotBefore(request, seconds: settings.retryAfterSeconds)
            send(descriptor, status: 429, reason: "Too Many Requests", body: "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"rate_limit_error\"}}",
                headers: ["Retry-After: \(settings.retryAfterSeconds)"])
            return true
        }
        if draw(request, call, 5) < settings.fail529 {
            send(descriptor, status: 529, reason: "Overloaded", body: "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}")
            return true
        }
        if draw(request, call, 6) < settings.malformed {
            send(descriptor, status: 200, reason: "OK", body: "{\"id\": \"truncated")
            return true
        }
        let (input, output, model) = Answers.shape(of: text, bytes: body.count)
        let cached = cacheUse(body: body, anthropic: anthropic, model: model, input: input)
        ledger.succeeded(request)
        if anthropic {
            send(descriptor, status: 200, reason: "OK", body: Answers.anthropic(
                id: "msg_fake_\(total)", model: model, text: "fake answer \(call)", input: input, output: output, tool: Answers.tool(in: text, anthropic: true),
                cached: cached), headers: ["request-id: req_fake_\(total)"])
        } else {
            send(descriptor, status: 200, reason: "OK", body: Answers.openai(
                id: "chatcmpl-fake-\(total)", model: model, text: "fake answer \(call)", input: input, output: output, tool: Answers.tool(in: text, anthropic: false),
                cached: cached.read), headers: ["x-request-id: req_fake_\(total)"])
        }
        return true
    }

    /// Serves one connection's requests until it closes.
    func serve(_ descriptor: Int32) {
        defer { close(descriptor) }
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            // Headers end at the first blank line.
            var headerEnd: Int?
            while headerEnd == nil {
                if let found = buffer.indices.dropLast(3).first(where: { buffer[$0] == 13 && buffer[$0 + 1] == 10 && buffer[$0 + 2] == 13 && buffer[$0 + 3] == 10 }) {
                    headerEnd = found
                    break
                }
                let count = read(descriptor, &chunk, chunk.count)
                if count <= 0 { return }
                buffer.append(contentsOf: chunk[0..<count])
            }
            let head = String(decoding: buffer[0..<headerEnd!], as: UTF8.self).split(separator: "\r\n")
            let requestLine = head.first?.split(separator: " ") ?? []
            let method = requestLine.first.map(String.init) ?? "GET"
            let path = requestLine.count > 1 ? String(requestLine[1]) : "/"
            var headers: [String: String] = [:]
            for line in head.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            let bodyStart = headerEnd! + 4
            // Large uploads ask before sending their body.
            if headers["expect"]?.lowercased() == "100-continue" {
                let go = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
                _ = go.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            }
            var body: [UInt8]
            if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
                buffer.removeFirst(bodyStart)
                body = []
                while true {
                    // Each chunk: its size in hex, CRLF, the bytes, CRLF; a zero size ends the body.
                    var lineEnd: Int?
                    while lineEnd == nil {
                        if let found = buffer.indices.dropLast().first(where: { buffer[$0] == 13 && buffer[$0 + 1] == 10 }) { lineEnd = found; break }
                        let count = read(descriptor, &chunk, chunk.count)
                        if count <= 0 { return }
                        buffer.append(contentsOf: chunk[0..<count])
                    }
                    let size = Int(String(decoding: buffer[0..<lineEnd!], as: UTF8.self).split(separator: ";").first ?? "0", radix: 16) ?? 0
                    while buffer.count < lineEnd! + 2 + size + 2 {
                        let count = read(descriptor, &chunk, chunk.count)
                        if count <= 0 { return }
                        buffer.append(contentsOf: chunk[0..<count])
                    }
                    body.append(contentsOf: buffer[(lineEnd! + 2)..<(lineEnd! + 2 + size)])
                    buffer.removeFirst(lineEnd! + 2 + size + 2)
                    if size == 0 { break }
                }
            } else {
                let length = Int(headers["content-length"] ?? "0") ?? 0
                while buffer.count < bodyStart + length {
                    let count = read(descriptor, &chunk, chunk.count)
                    if count <= 0 { return }
                    buffer.append(contentsOf: chunk[0..<count])
                }
                body = Array(buffer[bodyStart..<bodyStart + length])
                buffer.removeFirst(bodyStart + length)
            }
            if !answer(method: method, path: path, headers: headers, body: body, descriptor: descriptor) { return }
        }
    }
}

let settings = Settings(Array(CommandLine.arguments.dropFirst()))
let server = Server(settings: settings)
signal(SIGPIPE, SIG_IGN)

let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
var yes: Int32 = 1
setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
var address = sockaddr_in()
address.sin_family = sa_family_t(AF_INET)
address.sin_port = settings.port.bigEndian
address.sin_addr.s_addr = inet_addr(settings.host)
let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
guard bound == 0, listen(listener, 1024) == 0 else {
    FileHandle.standardError.write(Data("purser-fake-provider: cannot listen on \(settings.host):\(settings.port)\n".utf8))
    exit(1)
}
var actual = sockaddr_in()
var length = socklen_t(MemoryLayout<sockaddr_in>.size)
_ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
FileHandle.standardOutput.write(Data("listening on \(settings.host):\(UInt16(bigEndian: actual.sin_port))\n".utf8))

// Bounded in time whatever happens.
Thread.detachNewThread {
    Thread.sleep(forTimeInterval: Double(settings.maxSeconds))
    exit(0)
}

while true {
    let connection = accept(listener, nil, nil)
    if connection < 0 { continue }
    let thread = Thread { server.serve(connection) }
    thread.stackSize = 256 << 10
    thread.start()
}
