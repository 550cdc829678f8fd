import CCurl
import Foundation
import Synchronization

/// Every HTTP exchange Purser makes, live calls and batch transfers alike, on libcurl's multi interface driven by one
/// event loop: a thread waiting in `epoll` on the sockets libcurl asks it to watch and on libcurl's timers. The
/// cost of a call is what happens on its own socket, never a pass over every call in flight, so thousands of calls
/// waiting on slow models cost nothing while they wait.
///
/// The calls are spread over shards, each a multi handle with its own connections, of at most `transfersPerShard`
/// calls each. libcurl 7.88 looks through a multi handle's connections to the host when a call starts (for one to
/// reuse) and through all of them when it ends (for the connection it last used), so on one multi handle a call's cost
/// grew with the calls in flight; in a shard it is bounded by the shard's size. A call goes to a shard where a call to
/// its origin ended on a kept connection, so a connection is reused whenever one is idle, and otherwise to the first
/// shard with room, a new one when all are full.
///
/// The engine never opens more sockets than the process may: it makes no more shards than its descriptors leave room
/// for (`OpenFileLimit.shards(within:)`), and each shard opens at most its share of connections. A call beyond them is
/// not refused: libcurl carries it as another stream of a connection that multiplexes (HTTP/2), or keeps it waiting
/// until a connection is free, closing the oldest idle one to another origin if it must.
///
/// Connections are kept and reused across calls (HTTP/2 streams share one where the server offers it), TLS is
/// verified, nothing is followed (redirects are the caller's decision, `ProviderEndpoint.exchange`), and every
/// exchange ends at its answer, its timeout, a stall, a size limit or the cancellation of its task.
public final class HTTPEngine: @unchecked Sendable {
    /// The process's one engine, started on first use and kept for the life of the process.
    public static let shared = HTTPEngine()

    private enum Command {
        case start(Transfer)
        case cancel(Transfer)
    }

    /// The most calls a shard takes before a new shard is made (and the most connections it opens), and the most shards.
    public static let transfersPerShard = 64
    static let mostShards = 4_096
    /// The descriptors a shard holds beside its calls' sockets: libcurl's wake-up socket pair.
    public static let descriptorsPerShard = 2

    // Set up in `init`, then read only.
    private let epoll: Int32
    private let wake: Int32
    private let inbox = Mutex<[Command]>([])
    /// The descriptors the engine may hold for its shards and their connections (`limitDescriptors(to:)`).
    private let descriptors = Atomic<Int>(OpenFileLimit.current() - OpenFileLimit.reserved)
    /// How many times the loop has woken, for tests that check it sleeps while nothing happens.
    let wakes = Atomic<Int>(0)

    // The loop thread's own state: touched only on that thread (libcurl calls back on it, inside socket_action).
    private var shards: [Shard] = []
    private var running: [UnsafeMutableRawPointer: Transfer] = [:]
    /// The sockets in the epoll set, each with the shard whose connection it is, the events it is registered for, and
    /// whether libcurl still watches it. A connection's socket libcurl stops watching (its call ended and the connection
    /// went idle) stays in the set as it was: the next call on that connection usually waits for the same event, so a
    /// kept connection costs no epoll change per call. Should an idle one stir (its server closes it), it is taken out
    /// then. Only sockets the engine opened for libcurl are kept so, since their closing is known (`closeSocket`); any
    /// other libcurl watches (its resolver's) leaves the set when libcurl stops watching it.
    private struct Watch {
        var shard: Int
        var events: UInt32
        var wanted: Bool
    }
    private var watched: [Int32: Watch] = [:]
    /// The connections' sockets the engine opened for libcurl and it has not closed.
    private var connectionSockets: Set<Int32> = []
    /// Per origin, a shard for each call that ended there on a connection left open: where the next call finds one idle.
    private var idleConnections: [Origin?: [Int]] = [:]
    /// The commands last taken from the inbox, being carried out.
    private var takenCommands: [Command] = []

    // Shared with the callers, which set up their calls and keep their handles (`send`).
    /// Handles of calls that ended, kept for the next ones (`keep`): no more than were in flight at once, and at most 8,192.
    private let spareHandles = Mutex<[EasyHandle]>([])
    static let spareHandleLimit = 8_192
    /// URLs libcurl read as on their request's origin, each with that origin (at most 4,096, then forgotten).
    private let checkedURLs = Mutex<[String: Origin]>([:])

    private init() {
        guard curl_global_init(Int(CURL_GLOBAL_ALL)) == CURLE_OK else {
            fatalError("libcurl could not start (curl_global_init failed); check that libcurl4 is installed")
        }
        let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        let wake = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard epoll >= 0, wake >= 0, purser_epoll_control(epoll, wake, EPOLLIN.rawValue, EPOLL_CTL_ADD) == 0 else {
            fatalError("the HTTP engine could not make its epoll set (errno \(errno)); the process is out of file descriptors")
        }
        self.epoll = epoll
        self.wake = wake
        let thread = Thread.named("purser.http") { [self] in loop() }
        thread.start()
    }

    /// Holds the engine's shards and connections within `count` descriptors from now on: what the process's limit on
    /// open files leaves beside the ones it keeps for the rest. Shards already made keep their share.
    public func limitDescriptors(to count: Int) {
        descriptors.store(max(count, 1), ordering: .relaxed)
    }

    /// Sends `request` and waits for its answer or failure. Cancelling the calling task ends the exchange at once.
    ///
    /// The call is set up here, on the caller's thread, and its handle kept here once it ended: the loop thread, which
    /// every call passes through, only starts it and hears it end.
    public func send(_ request: HTTPRequest) async -> Result<HTTPResponse, ExchangeFailure> {
        let spare = spareHandles.withLock { $0.popLast() }
        guard let easy = spare?.pointer ?? curl_easy_init() else {
            return .failure(.other("libcurl could not make a handle"))
        }
        let transfer = Transfer(request: request, easy: easy)
        defer { keep(transfer) }
        if let failure = transfer.configure(setUpFor: spare?.setUpFor, checkedURLs: checkedURLs) { return .failure(failure) }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                transfer.finish = { continuation.resume(returning: $0) }
                post(.start(transfer))
            }
        } onCancel: {
            transfer.cancelled.store(true, ordering: .sequentiallyConsistent)
            post(.cancel(transfer))
        }
    }

    /// Frees what `transfer` held, once the loop is done with it, keeping its handle for the next call (libcurl's own
    /// advice: a handle reused is cheaper than a new one), still set up as it was when it was set up whole, else reset.
    private func keep(_ transfer: Transfer) {
        let setUpFor = transfer.configuredSetup
        if setUpFor == nil { curl_easy_reset(transfer.easy) } else { transfer.detach() }
        transfer.release()
        let kept = spareHandles.withLock { spare in
            guard spare.count < HTTPEngine.spareHandleLimit else { return false }
            spare.append(EasyHandle(pointer: transfer.easy, setUpFor: setUpFor))
            return true
        }
        if !kept { curl_easy_cleanup(transfer.easy) }
    }

    private func post(_ command: Command) {
        let wasEmpty = inbox.withLock { inbox in
            defer { inbox.append(command) }
            return inbox.isEmpty
        }
        // One wake-up per batch of commands: the loop takes everything in the inbox when it wakes.
        if wasEmpty {
            var one: UInt64 = 1
            _ = write(wake, &one, 8)
        }
    }

    // MARK: - The loop

    private func loop() {
        let capacity: Int32 = 512
        var descriptors = [Int32](repeating: 0, count: Int(capacity))
        var events = [UInt32](repeating: 0, count: Int(capacity))
        var stillRunning: Int32 = 0
        while true {
            var wait: Int32 = -1
            if let deadline = shards.lazy.compactMap(\.timerDeadline).min() {
                let now = HTTPEngine.now()
                wait = deadline <= now ? 0 : Int32(min((deadline - now + 999_999) / 1_000_000, 60_000))
            }
            let count = purser_epoll_wait(epoll, &descriptors, &events, capacity, wait)
            wakes.add(1, ordering: .relaxed)
            if count < 0 {
                // EINTR: a signal arrived; anything else cannot happen on a valid set, and is waited out rather than spun on.
                if -count != EINTR { usleep(1_000) }
                continue
            }
            for index in 0..<Int(count) {
                let descriptor = descriptors[index]
                if descriptor == wake {
                    takeCommands()
                    continue
                }
                guard let watch = watched[descriptor] else { continue }
                guard watch.wanted else {
                    watched[descriptor] = nil
                    _ = purser_epoll_control(epoll, descriptor, 0, EPOLL_CTL_DEL)
                    continue
                }
                let shard = watch.shard
                let ready = events[index]
                var flags: Int32 = 0
                if ready & EPOLLIN.rawValue != 0 { flags |= CURL_CSELECT_IN }
                if ready & EPOLLOUT.rawValue != 0 { flags |= CURL_CSELECT_OUT }
                if ready & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { flags |= CURL_CSELECT_ERR }
                _ = curl_multi_socket_action(shards[shard].multi, descriptor, flags, &stillRunning)
                shards[shard].hasNews = true
            }
            let now = HTTPEngine.now()
            for shard in shards {
                if let deadline = shard.timerDeadline, now >= deadline {
                    shard.timerDeadline = nil
                    _ = curl_multi_socket_action(shard.multi, CURL_SOCKET_TIMEOUT, 0, &stillRunning)
                    shard.hasNews = true
                }
                if shard.hasNews { collectFinished(shard) }
            }
        }
    }

    private func takeCommands() {
        var value: UInt64 = 0
        _ = read(wake, &value, 8)
        // The inbox and this spare array change places, so that neither is copied or allocated again on each wake.
        inbox.withLock { swap(&$0, &takenCommands) }
        defer { takenCommands.removeAll(keepingCapacity: true) }
        for command in takenCommands {
            switch command {
            case .start(let transfer): begin(transfer)
            case .cancel(let transfer):
                // Not running: not begun yet (it sees its flag when it begins) or already finished, its handle perhaps
                // running another call by now.
                guard running[transfer.easy] === transfer else { continue }
                end(transfer.easy, with: .failure(.cancelled))
            }
        }
    }

    private func begin(_ transfer: Transfer) {
        if transfer.cancelled.load(ordering: .sequentiallyConsistent) { return transfer.complete(.failure(.cancelled)) }
        guard let shard = shard(for: transfer.origin) else {
            return transfer.complete(.failure(.other("libcurl could not make a multi handle")))
        }
        let easy = transfer.easy
        running[easy] = transfer
        transfer.shard = shard
        let added = curl_multi_add_handle(shard.multi, easy)
        if added != CURLM_OK {
            running[easy] = nil
            return transfer.complete(.failure(.other(String(cString: curl_multi_strerror(added)))))
        }
        shard.load += 1
    }

    /// Where a call to `origin` goes: a shard holding an idle connection to it, or else the first shard with room (so
    /// that calls starting together share a shard, and over HTTP/2 its connection), or a new one when every shard is
    /// full and the descriptors allow one, or at the last the least loaded. Nil only when libcurl cannot make a multi
    /// handle.
    private func shard(for origin: Origin?) -> Shard? {
        if let index = idleConnections[origin]?.popLast() { return shards[index] }
        if let open = shards.first(where: { $0.load < HTTPEngine.transfersPerShard }) { return open }
        let plan = OpenFileLimit.shards(within: descriptors.load(ordering: .relaxed))
        if shards.count < plan.shards, let shard = Shard(index: shards.count, engine: self, connections: plan.connectionsEach) {
            shards.append(shard)
            return shard
        }
        return shards.min { $0.load < $1.load }
    }

    private func collectFinished(_ shard: Shard) {
        shard.hasNews = false
        var left: Int32 = 0
        while let message = curl_multi_info_read(shard.multi, &left) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            let code = message.pointee.data.result
            guard let transfer = running[easy] else { continue }
            end(easy, with: transfer.outcome(code))
        }
    }

    /// Takes `easy` out of the loop and answers its caller, which frees what it held.
    private func end(_ easy: UnsafeMutableRawPointer, with outcome: Result<HTTPResponse, ExchangeFailure>) {
        guard let transfer = running.removeValue(forKey: easy), let shard = transfer.shard else { return }
        _ = curl_multi_remove_handle(shard.multi, easy)
        shard.load -= 1
        if case .success(let response) = outcome, response.headers["connection"]?.equalsIgnoringASCIICase("close") != true {
            if idleConnections[transfer.origin, default: []].count < HTTPEngine.transfersPerShard * HTTPEngine.mostShards {
                idleConnections[transfer.origin, default: []].append(shard.index)
            }
        }
        transfer.complete(outcome)
    }

    // MARK: - libcurl's callbacks (on the loop thread, inside curl_multi_socket_action)

    private static let watchSocket: curl_socket_callback = { _, socket, what, context, _ in
        guard let context else { return -1 }
        let shard = Unmanaged<Shard>.fromOpaque(context).takeUnretainedValue()
        guard let engine = shard.engine else { return -1 }
        if what == CURL_POLL_REMOVE {
            if engine.connectionSockets.contains(socket) {
                engine.watched[socket]?.wanted = false
            } else if engine.watched.removeValue(forKey: socket) != nil {
                _ = purser_epoll_control(engine.epoll, socket, 0, EPOLL_CTL_DEL)
            }
            return 0
        }
        var events: UInt32 = 0
        if what & CURL_POLL_IN != 0 { events |= EPOLLIN.rawValue }
        if what & CURL_POLL_OUT != 0 { events |= EPOLLOUT.rawValue }
        let known = engine.watched[socket]
        if let known, known.events == events, engine.connectionSockets.contains(socket) {
            engine.watched[socket] = Watch(shard: shard.index, events: events, wanted: true)
            return 0
        }
        var result = purser_epoll_control(engine.epoll, socket, events, known != nil ? EPOLL_CTL_MOD : EPOLL_CTL_ADD)
        // A descriptor number reused after libcurl closed one: the set dropped the old one by itself, or still holds it.
        if result == EEXIST { result = purser_epoll_control(engine.epoll, socket, events, EPOLL_CTL_MOD) }
        if result == ENOENT { result = purser_epoll_control(engine.epoll, socket, events, EPOLL_CTL_ADD) }
        engine.watched[socket] = result == 0 ? Watch(shard: shard.index, events: events, wanted: true) : nil
        return result == 0 ? 0 : -1
    }

    private static let setTimer: curl_multi_timer_callback = { _, milliseconds, context in
        guard let context else { return -1 }
        let shard = Unmanaged<Shard>.fromOpaque(context).takeUnretainedValue()
        // At most a day ahead: the loop wakes at least once a minute anyway, and no product of libcurl's number overflows.
        shard.timerDeadline = milliseconds < 0 ? nil : HTTPEngine.now() + UInt64(min(milliseconds, 86_400_000)) * 1_000_000
        return 0
    }

    /// Opens a connection's socket for libcurl, noting it as one whose closing the engine will hear of.
    fileprivate static let openSocket: curl_opensocket_callback = { _, _, address in
        guard let address else { return CURL_SOCKET_BAD }
        let socket = Glibc.socket(address.pointee.family, address.pointee.socktype | Int32(SOCK_CLOEXEC.rawValue), address.pointee.protocol)
        if socket >= 0 { HTTPEngine.shared.connectionSockets.insert(socket) }
        return socket
    }

    /// Closes a connection's socket for libcurl; closing takes it out of the epoll set.
    fileprivate static let closeSocket: curl_closesocket_callback = { _, socket in
        HTTPEngine.shared.connectionSockets.remove(socket)
        HTTPEngine.shared.watched[socket] = nil
        return close(socket)
    }

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// One multi handle, its connections and its timer; made and touched only on the loop thread, kept for the life of
    /// the process.
    fileprivate final class Shard {
        let index: Int
        let multi: UnsafeMutableRawPointer
        weak var engine: HTTPEngine?
        /// Calls running on it.
        var load = 0
        /// When libcurl asked to be called back for this shard's timeouts.
        var timerDeadline: UInt64?
        /// Whether sockets or timers moved since its finished calls were last collected.
        var hasNews = false

        /// `connections`: the most it holds open at once; a call beyond them waits for one (or rides one as an HTTP/2
        /// stream).
        init?(index: Int, engine: HTTPEngine, connections: Int) {
            guard let multi = curl_multi_init() else { return nil }
            self.index = index
            self.multi = multi
            self.engine = engine
            let context = Unmanaged.passUnretained(self).toOpaque()
            _ = purser_multi_set_pointer(multi, CURLMOPT_SOCKETDATA, context)
            _ = purser_multi_set_socket_callback(multi, HTTPEngine.watchSocket)
            _ = purser_multi_set_pointer(multi, CURLMOPT_TIMERDATA, context)
            _ = purser_multi_set_timer_callback(multi, HTTPEngine.setTimer)
            _ = purser_multi_set_long(multi, CURLMOPT_PIPELINING, Int(CURLPIPE_MULTIPLEX))
            // Every connection that goes idle is kept for the next call (until it is two minutes idle, libcurl's
            // default), rather than a cache sized by the calls in flight at the moment, which closes connections a wave
            // of calls is about to reuse. Open and idle together they are at most the shard's share: a call that needs
            // one more waits for one to be free, or has libcurl close the oldest idle one to another origin.
            _ = purser_multi_set_long(multi, CURLMOPT_MAXCONNECTS, 100_000)
            _ = purser_multi_set_long(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, connections)
        }
    }
}

/// A libcurl easy handle, passed between the callers and the engine's spare handles, with what it is set up for (nil:
/// nothing yet, or reset).
private struct EasyHandle: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    var setUpFor: Transfer.Setup?
}

/// One exchange: its request, what libcurl holds for it, and the answer as it arrives. Set up by the caller, then
/// touched only on the engine's loop thread until it is answered, except `cancelled`, which the caller's cancellation
/// sets; then freed by the caller.
private final class Transfer: @unchecked Sendable {
    let request: HTTPRequest
    /// Where it goes, for finding a shard with a connection there.
    let origin: Origin?
    let cancelled = Atomic<Bool>(false)
    var finish: (@Sendable (Result<HTTPResponse, ExchangeFailure>) -> Void)?

    let easy: UnsafeMutableRawPointer
    /// What `easy` is set up for, as its options every call like it shares; `configuredSetup` once they are all set.
    let setup: Setup
    private(set) var configuredSetup: Setup?
    /// The shard it runs on, set when it is added to one.
    var shard: HTTPEngine.Shard?
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private let errorText = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE))
    private var upload: Int32 = -1
    /// How many times libcurl was about to send the request, and whether it was stopped from sending it again.
    private var sends = 0
    private var resendRefused = false
    private var download: Int32 = -1

    private var body: [UInt8] = []
    private var written: Int64 = 0
    private var headers = HTTPHeaders()
    private var headerBytes = 0
    private var passedLimit: Int64?
    private var fileError: String?

    /// The most header bytes an answer may carry: 1 MiB.
    static let headerLimit = 1 << 20

    init(request: HTTPRequest, easy: UnsafeMutableRawPointer) {
        self.request = request
        self.easy = easy
        origin = request.origin ?? Origin(request.url)
        setup = Setup(request, origin: origin)
        errorText.initialize(to: 0)
    }

    deinit { errorText.deallocate() }

    func complete(_ outcome: Result<HTTPResponse, ExchangeFailure>) {
        let finish = self.finish
        self.finish = nil
        finish?(outcome)
    }

    /// What a handle is set up for beyond a single call: the options every call with the same of these shares. A spare
    /// handle last set up for the same is not reset, and only the call's own options are set on it (its URL, headers,
    /// body, timeouts and the pointers to this transfer), as libcurl means handles to be reused; the reset alone was
    /// 1.6% of a 0 ms run's CPU (perf).
    struct Setup: Equatable {
        var method: String
        var body: BodyKind
        var certificateAuthorities: String?
        var overTLS: Bool
        var stalledSeconds: Int?

        enum BodyKind: Equatable { case none, bytes, file }

        init(_ request: HTTPRequest, origin: Origin?) {
            method = request.method
            switch request.body {
            case .none: body = .none
            case .bytes: body = .bytes
            case .file: body = .file
            }
            certificateAuthorities = request.certificateAuthorities
            overTLS = origin?.scheme == "https"
            stalledSeconds = request.stalledSeconds.map { max(1, Transfer.milliseconds($0) / 1000) }
        }
    }

    /// Sets up `easy` for the request, `setUpFor` being what it was last set up for (nil for a new or reset handle);
    /// the failure when it cannot be sent as asked.
    func configure(setUpFor: Setup?, checkedURLs: borrowing Mutex<[String: Origin]>) -> ExchangeFailure? {
        let context = Unmanaged.passUnretained(self).toOpaque()
        var failed = CURLE_OK
        func check(_ code: CURLcode) { if failed == CURLE_OK { failed = code } }
        func set(_ option: CURLoption, _ value: Int) { check(purser_easy_set_long(easy, option, value)) }
        func set(_ option: CURLoption, _ value: String) { check(purser_easy_set_pointer(easy, option, value)) }
        // A literal needs no copy on its way to libcurl (a short `String` is copied to the heap for C, once per call).
        func set(_ option: CURLoption, literal value: StaticString) { check(purser_easy_set_pointer(easy, option, value.utf8Start)) }
        if setUpFor != setup {
            if setUpFor != nil { curl_easy_reset(easy) }
            defer { if failed == CURLE_OK { configuredSetup = setup } }
            set(CURLOPT_NOSIGNAL, 1)
            set(CURLOPT_PROTOCOLS_STR, literal: "http,https")
            set(CURLOPT_FOLLOWLOCATION, 0)
            set(CURLOPT_SSL_VERIFYPEER, 1)
            set(CURLOPT_SSL_VERIFYHOST, 2)
            if let authorities = setup.certificateAuthorities { set(CURLOPT_CAINFO, authorities) }
            set(CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS)
            // Over TLS a new call waits for a connection being set up that may multiplex (ALPN says so at the
            // handshake) rather than opening one beside it. Never over plain HTTP: there libcurl would learn it cannot
            // only from the first answer, and every call would wait for it.
            if setup.overTLS { set(CURLOPT_PIPEWAIT, 1) }
            set(CURLOPT_TCP_KEEPALIVE, 1)
            check(purser_easy_set_socket_callbacks(easy, HTTPEngine.openSocket, HTTPEngine.closeSocket))
            set(CURLOPT_ACCEPT_ENCODING, literal: "")
            if let stalled = setup.stalledSeconds {
                set(CURLOPT_LOW_SPEED_LIMIT, 1)
                set(CURLOPT_LOW_SPEED_TIME, stalled)
            }
            check(purser_easy_set_callback(easy, CURLOPT_HEADERFUNCTION, Transfer.receiveHeader))
            check(purser_easy_set_callback(easy, CURLOPT_WRITEFUNCTION, Transfer.receiveBody))
            // libcurl sends a request again by itself when a kept connection closes before any answer (or an HTTP/2
            // stream is refused). The provider may have read and billed the first, so a call that is not a GET is sent
            // once: the pre-request callback, which runs before each send, refuses a second, and the call ends as
            // dropped. Every call a provider sees is then an attempt the dispatcher counted.
            if setup.method != "GET" { check(purser_easy_set_prereq(easy, Transfer.beforeSending)) }
            switch setup.body {
            case .none: break
            case .bytes: set(CURLOPT_POST, 1)
            case .file:
                set(CURLOPT_POST, 1)
                check(purser_easy_set_callback(easy, CURLOPT_READFUNCTION, Transfer.sendBody))
            }
            if setup.method == "GET" {
                if setup.body == .none { set(CURLOPT_HTTPGET, 1) } else { set(CURLOPT_CUSTOMREQUEST, literal: "GET") }
            } else if setup.method != "POST" {
                set(CURLOPT_CUSTOMREQUEST, setup.method)
            }
        } else {
            configuredSetup = setup
        }

        // The call's own, after any reset.
        if let failure = setURL(checkedURLs: checkedURLs) { return failure }
        check(purser_easy_set_pointer(easy, CURLOPT_ERRORBUFFER, errorText))
        let total = Transfer.milliseconds(request.timeoutSeconds)
        set(CURLOPT_TIMEOUT_MS, total)
        set(CURLOPT_CONNECTTIMEOUT_MS, min(total, 30_000))
        check(purser_easy_set_pointer(easy, CURLOPT_HEADERDATA, context))
        check(purser_easy_set_pointer(easy, CURLOPT_WRITEDATA, context))
        if setup.method != "GET" { check(purser_easy_set_pointer(easy, CURLOPT_PREREQDATA, context)) }

        func append(_ line: UnsafePointer<CChar>) -> Bool {
            guard let list = curl_slist_append(headerList, line) else { return false }
            headerList = list
            return true
        }
        // "Expect:" takes off libcurl's 100-continue wait before large bodies.
        let expect = UnsafeRawPointer(("Expect:" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
        guard request.headers.allSatisfy({ "\($0.name): \($0.value)".withCString(append) }), append(expect) else {
            return .other("libcurl could not hold the request's headers")
        }
        check(purser_easy_set_pointer(easy, CURLOPT_HTTPHEADER, headerList))

        switch request.body {
        case .none:
            if request.method != "GET" {
                check(purser_easy_set_offset(easy, CURLOPT_POSTFIELDSIZE_LARGE, 0))
                set(CURLOPT_COPYPOSTFIELDS, literal: "")
            }
        case .bytes(let bytes):
            // Copied to libcurl, which sends a body under 64 KiB in the same write as the headers: one segment for a
            // prompt rather than two, and no upload buffer held for each call in flight.
            check(purser_easy_set_offset(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(bytes.count)))
            if bytes.isEmpty {
                set(CURLOPT_COPYPOSTFIELDS, literal: "")
            } else {
                bytes.withUnsafeBytes { check(purser_easy_set_pointer(easy, CURLOPT_COPYPOSTFIELDS, $0.baseAddress)) }
            }
        case .file(let path):
            upload = open(path, O_RDONLY | O_CLOEXEC)
            var status = stat()
            guard upload >= 0, fstat(upload, &status) == 0 else {
                return .localFile("could not read \(path) to send it: \(String(cString: strerror(errno)))")
            }
            check(purser_easy_set_offset(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(status.st_size)))
            check(purser_easy_set_pointer(easy, CURLOPT_READDATA, context))
        }

        if case .file(let path, _) = request.sink {
            download = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard download >= 0 else { return .localFile("could not write the answer to \(path): \(String(cString: strerror(errno)))") }
        }
        if failed != CURLE_OK { return .other(String(cString: curl_easy_strerror(failed))) }
        return nil
    }

    /// Takes the pointers to this transfer and its memory off `easy`, before they are freed with it, so that the handle
    /// kept for the next call holds none of them.
    func detach() {
        _ = purser_easy_set_pointer(easy, CURLOPT_ERRORBUFFER, nil)
        _ = purser_easy_set_pointer(easy, CURLOPT_HTTPHEADER, nil)
        _ = purser_easy_set_pointer(easy, CURLOPT_HEADERDATA, nil)
        _ = purser_easy_set_pointer(easy, CURLOPT_WRITEDATA, nil)
        if setup.method != "GET" { _ = purser_easy_set_pointer(easy, CURLOPT_PREREQDATA, nil) }
        if setup.body == .file { _ = purser_easy_set_pointer(easy, CURLOPT_READDATA, nil) }
    }

    /// The URL, checked against the request's origin as libcurl parses it, so that what is sent goes where the caller
    /// checked it would. libcurl reads the text again when it sends it, the same way but for two things a URL that
    /// passed here never needs: a scheme guessed when there is none, and schemes it does not know.
    private func setURL(checkedURLs: borrowing Mutex<[String: Origin]>) -> ExchangeFailure? {
        let text = request.url.absoluteString
        // A URL read as on this origin before is not read apart again.
        if let origin = request.origin, checkedURLs.withLock({ $0[text] }) != origin {
            if let failure = Transfer.check(text, on: origin) { return failure }
            checkedURLs.withLock { checkedURLs in
                if checkedURLs.count >= 4_096 { checkedURLs.removeAll() }
                checkedURLs[text] = origin
            }
        }
        guard purser_easy_set_pointer(easy, CURLOPT_URL, text) == CURLE_OK else {
            return .other("libcurl would not take the URL \(String(text.prefix(200)))")
        }
        return nil
    }

    /// Whether libcurl reads `text` as a URL on `origin`: nil when it does, else why not.
    private static func check(_ text: String, on origin: Origin) -> ExchangeFailure? {
        guard let url = curl_url() else { return .other("libcurl could not hold a URL") }
        defer { curl_url_cleanup(url) }
        guard curl_url_set(url, CURLUPART_URL, text, 0) == CURLUE_OK else {
            return .misdirected("libcurl cannot read the URL \(String(text.prefix(200)))")
        }
        func part(_ which: CURLUPart, _ flags: UInt32 = 0) -> String? {
            var text: UnsafeMutablePointer<CChar>?
            guard curl_url_get(url, which, &text, flags) == CURLUE_OK, let text else { return nil }
            defer { curl_free(text) }
            return String(cString: text)
        }
        let host = part(CURLUPART_HOST)?.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let seen = (part(CURLUPART_SCHEME)?.lowercased(), host, part(CURLUPART_PORT, UInt32(CURLU_DEFAULT_PORT)).flatMap { Int($0) })
        guard seen.0 == origin.scheme, seen.1 == origin.host, seen.2 == origin.port else {
            return .misdirected("libcurl reads \(String(text.prefix(200))) as pointing elsewhere than \(origin)")
        }
        return nil
    }

    /// Frees what libcurl held for this exchange and closes its files, once `easy` is reset or detached from them.
    func release() {
        if let headerList { curl_slist_free_all(headerList) }
        headerList = nil
        if upload >= 0 { close(upload) }
        upload = -1
        if download >= 0, close(download) != 0, fileError == nil {
            fileError = "could not finish writing the answer: \(String(cString: strerror(errno)))"
        }
        download = -1
    }

    /// What the exchange came to, once libcurl says it is done with `code`. Read before `release`.
    func outcome(_ code: CURLcode) -> Result<HTTPResponse, ExchangeFailure> {
        if let passedLimit { return .failure(.tooLarge(limit: passedLimit)) }
        if let fileError { return .failure(.localFile(fileError)) }
        // The connection closed before any answer, and the call was not sent again (see `configure`).
        if resendRefused { return .failure(.dropped) }
        guard code == CURLE_OK else { return .failure(failure(code)) }
        var status = 0
        _ = purser_easy_get_long(easy, CURLINFO_RESPONSE_CODE, &status)
        if download >= 0, close(download) != 0 {
            download = -1
            return .failure(.localFile("could not finish writing the answer: \(String(cString: strerror(errno)))"))
        }
        download = -1
        return .success(HTTPResponse(status: status, headers: headers, body: body))
    }

    private func failure(_ code: CURLcode) -> ExchangeFailure {
        switch code {
        case CURLE_COULDNT_CONNECT: return .refused
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: return .noSuchHost
        case CURLE_OPERATION_TIMEDOUT: return .timedOut
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER, CURLE_SSL_CACERT_BADFILE,
            CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_ENGINE_INITFAILED:
            return .insecure
        case CURLE_GOT_NOTHING, CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_PARTIAL_FILE, CURLE_HTTP2, CURLE_HTTP2_STREAM:
            return .dropped
        case CURLE_SEND_FAIL_REWIND:
            // The connection closed before any answer, and the file being sent could not be read again from its start.
            return .dropped
        case CURLE_WEIRD_SERVER_REPLY, CURLE_BAD_CONTENT_ENCODING, CURLE_UNSUPPORTED_PROTOCOL: return .broken
        default:
            let detail = String(cString: errorText)
            return .other(detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail)
        }
    }

    static func milliseconds(_ seconds: Double) -> Int {
        guard seconds.isFinite else { return seconds > 0 ? 86_400_000 : 1 }
        return Int(min(max(seconds * 1000, 1), 86_400_000))
    }

    // MARK: - Bytes in and out (on the loop thread)

    /// Hands the bytes libcurl gives (`size` × `count` of them, never more than its buffer) to `take` on the transfer
    /// `context` names: all of them taken, or 0, which ends the transfer.
    private static func hand(
        _ buffer: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ context: UnsafeMutableRawPointer?,
        to take: (Transfer, UnsafeRawBufferPointer) -> Bool
    ) -> Int {
        guard let context, let buffer else { return 0 }
        let transfer = Unmanaged<Transfer>.fromOpaque(context).takeUnretainedValue()
        let length = size * count
        return take(transfer, UnsafeRawBufferPointer(start: buffer, count: length)) ? length : 0
    }

    private static let receiveBody: purser_data_callback = { hand($0, $1, $2, $3) { $0.keep($1) } }

    private func keep(_ bytes: UnsafeRawBufferPointer) -> Bool {
        switch request.sink {
        case .memory(let limit):
            guard body.count <= limit - bytes.count else { passedLimit = Int64(limit); return false }
            body.append(contentsOf: bytes)
            return true
        case .file(_, let limit):
            guard written <= limit - Int64(bytes.count) else { passedLimit = limit; return false }
            var offset = 0
            while offset < bytes.count {
                let done = write(download, bytes.baseAddress! + offset, bytes.count - offset)
                if done < 0 {
                    if errno == EINTR { continue }
                    fileError = "could not write the answer to disk: \(String(cString: strerror(errno)))"
                    return false
                }
                offset += done
            }
            written += Int64(bytes.count)
            return true
        }
    }

    private static let receiveHeader: purser_data_callback = { hand($0, $1, $2, $3) { $0.keepHeader($1) } }

    private func keepHeader(_ bytes: UnsafeRawBufferPointer) -> Bool {
        headerBytes += bytes.count
        guard headerBytes <= Transfer.headerLimit else { passedLimit = Int64(Transfer.headerLimit); return false }
        // Each answer's headers start with its status line; an interim answer's (100 Continue) are dropped.
        if bytes.starts(with: "HTTP/".utf8) {
            headers = HTTPHeaders()
            return true
        }
        guard let colon = bytes.firstIndex(of: UInt8(ascii: ":")) else { return true }
        let name = Transfer.trimmed(bytes[..<colon])
        let value = Transfer.trimmed(bytes[(colon + 1)...])
        if !name.isEmpty { headers.add(name: UnsafeRawBufferPointer(rebasing: name), value: UnsafeRawBufferPointer(rebasing: value)) }
        return true
    }

    /// `bytes` without the spaces, tabs and line ends around them.
    private static func trimmed(_ bytes: Slice<UnsafeRawBufferPointer>) -> Slice<UnsafeRawBufferPointer> {
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) }) else {
            return bytes[bytes.startIndex..<bytes.startIndex]
        }
        return bytes[first...last]
    }

    /// Reads the next part of the file being sent.
    private static let sendBody: purser_data_callback = { buffer, size, count, context in
        guard let context, let buffer else { return Int(CURL_READFUNC_ABORT) }
        let transfer = Unmanaged<Transfer>.fromOpaque(context).takeUnretainedValue()
        while true {
            let done = read(transfer.upload, buffer, size * count)
            if done >= 0 { return done }
            if errno == EINTR { continue }
            transfer.fileError = "could not read the file being sent: \(String(cString: strerror(errno)))"
            return Int(CURL_READFUNC_ABORT)
        }
    }

    /// Lets the request be sent the first time only.
    private static let beforeSending: curl_prereq_callback = { context, _, _, _, _ in
        guard let context else { return Int32(CURL_PREREQFUNC_ABORT) }
        let transfer = Unmanaged<Transfer>.fromOpaque(context).takeUnretainedValue()
        transfer.sends += 1
        guard transfer.sends == 1 else {
            transfer.resendRefused = true
            return Int32(CURL_PREREQFUNC_ABORT)
        }
        return Int32(CURL_PREREQFUNC_OK)
    }
}
