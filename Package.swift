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
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .target(name: "SQLiteStore", dependencies: ["CSQLite"]),
        .target(name: "PurserCore", dependencies: ["CCurl"]),
        .target(name: "PurserSQLite", dependencies: ["PurserCore", "SQLiteStore"]),
        .target(name: "PurserServe", dependencies: ["PurserCore", "PurserSQLite"]),
        .target(name: "PurserCLI", dependencies: ["PurserCore", "PurserSQLite", "PurserServe"]),
        .target(name: "PurserFuzz", dependencies: ["PurserCore"]),
        .executableTarget(name: "purser", dependencies: ["PurserCLI"]),
        .executableTarget(name: "purser-crash-test", dependencies: ["PurserCLI", "PurserCore"]),
        .executableTarget(name: "purser-bench", dependencies: ["PurserCore", "PurserSQLite", "SQLiteStore"]),
        .executableTarget(name: "purser-jobgen", dependencies: ["PurserCore"]),
        .executableTarget(name: "purser-fake-provider", dependencies: ["PurserCore"]),
        .executableTarget(name: "purser-fuzz", dependencies: ["PurserFuzz"]),
        .testTarget(name: "SQLiteStoreTests", dependencies: ["SQLiteStore"]),
        .testTarget(name: "PurserCoreTests", dependencies: ["PurserCore", "PurserSQLite", "SQLiteStore", "PurserFuzz"]),
        .testTarget(name: "PurserServeTests", dependencies: ["PurserServe", "PurserCore"]),
        .testTarget(name: "PurserCLITests", dependencies: ["PurserCLI", "PurserCore", "PurserSQLite", "purser", "purser-crash-test", "purser-fake-provider"]),
    ],
    swiftLanguageModes: [.v6]
)
