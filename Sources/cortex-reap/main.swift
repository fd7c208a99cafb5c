import CortexCLI

runToolAndExit(ReapTool.tool)
