import CortexCLI

runToolAndExit(BudgetTool.tool)
