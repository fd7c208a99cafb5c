// swift-tools-version:6.0
import PackageDescription

/// The command-line tools. Each is a one-line `main.swift` over `CortexCLI`.
let tools = ["cortex", "cortex-budget", "cortex-task", "cortex-spawn", "cortex-reap"]
/// Installed beside the tools but not typed by people: the supervisor each worker run lives under.
let helpers = ["cortex-supervise"]

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "cortex",
    products: [
        .library(name: "CortexCore", targets: ["CortexCore"]),
        .library(name: "CortexStorage", targets: ["CortexStorage"]),
        .library(name: "CortexProcesses", targets: ["CortexProcesses"]),
    ] + (tools + helpers).map { .executable(name: $0, targets: [$0]) },
    targets: [
        // C that both shim targets include (the one executable lookup), so the library and the
        // Embedded Swift supervisor share one copy.
        .target(name: "CCortexCommon"),
        .target(name: "CCortexShims", dependencies: ["CCortexCommon"], cSettings: [.define("_GNU_SOURCE")]),
        // The supervisor that lives as long as its worker, in Embedded Swift: no Swift runtime to
        // load and no journal code, so each of 100 supervisors stays small (decision 017). It
        // links statically on its own; `bin/build` builds it without -static-executable.
        .target(name: "CSupervisorLibc", dependencies: ["CCortexCommon"], cSettings: [.define("_GNU_SOURCE")]),
        .executableTarget(
            name: "cortex-supervise", dependencies: ["CSupervisorLibc"],
            swiftSettings: [.enableExperimentalFeature("Embedded"), .unsafeFlags(["-wmo", "-parse-as-library"])],
            linkerSettings: [.unsafeFlags(["-Xclang-linker", "-static"])]),
        // The domain: records, the pure reducer, state, the Journal protocol, snapshot encodings.
        // No system call (.ci/lint-syscalls); its only C is pure byte work (CCortexBytes).
        .target(name: "CCortexBytes"),
        .target(name: "CortexCore", dependencies: ["CCortexBytes"], swiftSettings: strict),
        // The store, its journal backends (file, memory), snapshot and view files, and the
        // system-call layer (POSIX/): everything that touches the machine's files.
        .target(
            name: "CortexStorage", dependencies: ["CortexCore", "CCortexBytes", "CCortexShims", "COpenSSL"], swiftSettings: strict),
        // The system's OpenSSL (libssl, libcrypto) for TLS with client certificates to etcd:
        // a system library, not a package (docs/decisions/032-system-openssl.md). Debian's
        // libssl-dev ships the static archives too, so -static-executable builds keep working.
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // Process control: spawning, supervision, loss detection and the reaper's work, over the
        // domain and its store (docs/architecture.md).
        .target(name: "CortexProcesses", dependencies: ["CortexCore", "CortexStorage"], swiftSettings: strict),
        .target(name: "CortexCLI", dependencies: ["CortexCore", "CortexStorage", "CortexProcesses"], swiftSettings: strict),
        .testTarget(
            name: "CortexCoreTests", dependencies: ["CortexCore", "CortexStorage", "CortexProcesses", "CortexCLI"],
            swiftSettings: strict),
        // Depending on the executables makes `swift test` build them before the end-to-end tests run.
        .testTarget(
            name: "CortexToolsTests",
            dependencies: ["CortexCore", "CortexStorage", "CortexProcesses"] + tools.map { .target(name: $0) },
            swiftSettings: strict
        ),
        // In-library benchmarks (bench/README.md); not one of the installed tools.
        .executableTarget(
            name: "cortex-bench", dependencies: ["CortexCore", "CortexStorage", "CortexProcesses"], path: "Sources/cortex-bench",
            swiftSettings: strict),
    ] + tools.map { .executableTarget(name: $0, dependencies: ["CortexCLI"], swiftSettings: strict) }
)
