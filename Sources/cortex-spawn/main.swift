import CortexCLI

runToolAndExit(SpawnTool.tool)
