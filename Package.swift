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
        // Where the tests keep their files, removed when the test process exits.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "SQLiteStoreTests", dependencies: ["SQLiteStore", "TestSupport"]),
        .testTarget(name: "PurserCoreTests", dependencies: ["PurserCore", "PurserSQLite", "SQLiteStore", "PurserFuzz", "TestSupport"]),
        .testTarget(name: "PurserServeTests", dependencies: ["PurserServe", "PurserCore", "TestSupport"]),
        .testTarget(
            name: "PurserCLITests",
            dependencies: ["PurserCLI", "PurserCore", "PurserSQLite", "purser", "purser-crash-test", "purser-fake-provider", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
