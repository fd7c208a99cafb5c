if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "task-folder" {
    runTaskFolder(CommandLine.arguments)
} else if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "ops-journal" {
    runOpsJournal(CommandLine.arguments)
} else {
    runLibraryBenchmarks(CommandLine.arguments)
}
