"""tiertrace tier 1: workflow runs, costs, prompts and optimizations in MLflow.

Install it and every workflow becomes an MLflow run (nodes as nested runs),
with tokens, cost and per-model totals as metrics. Query costs with
:func:`costs` or ``tiertrace costs --since 30d --by workflow``.

Importing this package does not import mlflow (listing plugins stays fast);
the tier imports it on its writer thread when it starts.
"""

from __future__ import annotations

from tiertrace_mlflow.config import MlflowConfig
from tiertrace_mlflow.costs import CostRow, costs
from tiertrace_mlflow.tier import MlflowTier

__all__ = ["MlflowTier", "MlflowConfig", "costs", "CostRow"]
__version__ = "0.1.0"
