// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "Purser",
    products: [
        .executable(name: "purser", targets: ["purser"]),
    ],
    targets: [
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .target(name: "SQLiteStore", dependencies: ["CSQLite"]),
        .target(name: "PurserCore", dependencies: ["SQLiteStore"]),
        .target(name: "PurserCLI", dependencies: ["PurserCore"]),
        .executableTarget(name: "purser", dependencies: ["PurserCLI"]),
        .executableTarget(name: "purser-bench", dependencies: ["PurserCore", "SQLiteStore"]),
        .executableTarget(name: "purser-jobgen", dependencies: ["PurserCore"]),
        .executableTarget(name: "purser-fake-provider"),
        .testTarget(name: "SQLiteStoreTests", dependencies: ["SQLiteStore"]),
        .testTarget(name: "PurserCoreTests", dependencies: ["PurserCore", "SQLiteStore"]),
        .testTarget(name: "PurserCLITests", dependencies: ["PurserCLI", "PurserCore", "purser", "purser-fake-provider"]),
    ],
    swiftLanguageModes: [.v6]
)
