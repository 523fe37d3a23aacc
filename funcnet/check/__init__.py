"""Gradient verification: hand-written derivative rules against autodiff of their plain
forward and against float64 finite differences.

- :func:`verify` / :func:`assert_rule_correct`: anyone's ``jax.custom_vjp`` or
  ``jax.custom_jvp`` (``_verify``; the call's arguments and options in ``_arguments``,
  the references in ``_references``, the per-leaf verdicts in ``_compare``, the rule
  under transformations in ``_transforms``, the report in ``_report``).
  See ``docs/verify.md``.
- :func:`check_layer`, :func:`check_registry`, ``python -m funcnet.check``: funcnet's own
  rules from ``funcnet.layers.REGISTRY`` (``_registry``).
"""

from funcnet.check._compare import Comparison, default_atol, default_rtol
from funcnet.check._registry import (
    AUTODIFF_RTOL,
    NUMERICAL_RTOL,
    REGISTRY,
    CheckResult,
    check_layer,
    check_registry,
    format_table,
    gradients_three_ways,
    main,
)
from funcnet.check._report import TRANSFORMS, VerifyReport, VerifyRow, format_report
from funcnet.check._verify import assert_rule_correct, verify

__all__ = [
    "AUTODIFF_RTOL",
    "NUMERICAL_RTOL",
    "REGISTRY",
    "TRANSFORMS",
    "CheckResult",
    "Comparison",
    "VerifyReport",
    "VerifyRow",
    "assert_rule_correct",
    "check_layer",
    "check_registry",
    "default_atol",
    "default_rtol",
    "format_report",
    "format_table",
    "gradients_three_ways",
    "main",
    "verify",
]
