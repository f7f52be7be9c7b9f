"""Evaluation: the suites' registry (``suites``), their metrics (``metrics``), the report built
from their records (``report``) and the shipped feature network behind sample quality (``features``)."""
