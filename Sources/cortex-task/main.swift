import CortexCLI

runToolAndExit(TaskTool.tool)
