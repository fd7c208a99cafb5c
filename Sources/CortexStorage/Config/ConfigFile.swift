import CortexCore

extension CoordinationLayout {
    /// Sets one key of `config.json` to `value`, keeping every other key as the user wrote it
    /// (nothing is written when it already has that value); the file is replaced whole and
    /// durably, with the folder's shared file mode (`cortex init`, `cortex audit start`).
    /// - Throws: `configuration` when `config.json` is not a JSON object, I/O errors as they come.
    public func updateConfig(key: String, value: JSONValue) throws(CortexError) {
        let bytes: [UInt8]
        do { bytes = try folder.readFile(config, limit: FileLimits.config) } catch { throw .system("read", config, error) }
        guard case .object(var members)? = try? JSONValue.parse(bytes) else {
            throw .configuration("\(config) is not a JSON object")
        }
        if let index = members.firstIndex(where: { $0.key == key }) {
            if members[index].value == value { return }
            members[index].value = value
        } else {
            members.append(JSONMember(key, value))
        }
        try AtomicFile.replace(
            config, in: folder, with: JSONValue.object(members).prettySerialized(), durability: .powerLoss,
            mode: FolderPermissions.detect(root: root).file(.shared))
    }
}
