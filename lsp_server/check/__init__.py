"""`diffusion-lsp check`: the repair model as a CI lint step.

walk (files) -> analyze (blocks -> the shared repair job (`lsp_server.repair`) -> findings) -> runner (processes, order)
-> fix (atomic writes, diffs) -> formats / sarif (reports) -> cli (arguments, exit code).
"""

from lsp_server.check.findings import RULES, FileResult, Finding, Rule
from lsp_server.check.repairer import EngineRepairerFactory, Proposal, Repairer

__all__ = [
    "RULES", "EngineRepairerFactory", "FileResult", "Finding", "Proposal",
    "Repairer", "Rule",
]
