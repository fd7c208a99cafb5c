import CortexCLI

runToolAndExit(CortexTool.tool)
