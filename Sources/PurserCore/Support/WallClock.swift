import Foundation

/// Where "now" comes from, as integer milliseconds since 1970; injectable so tests control time.
public struct WallClock: Sendable {
    private let read: @Sendable () -> Int64

    public init(_ read: @escaping @Sendable () -> Int64) { self.read = read }

    public func now() -> Int64 { read() }

    public static let system = WallClock { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    public static func fixed(_ milliseconds: Int64) -> WallClock { WallClock { milliseconds } }
}
