"""The rule under transformations, on request (``verify(..., transforms=...)``): under
``jit`` it equals the eager rule, under ``vmap`` the per-example rule, and second order
through it equals that of the plain forward."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from funcnet.check import _references as refs
from funcnet.check._arguments import Setup
from funcnet.check._compare import compare, default_atol, default_rtol
from funcnet.check._report import VerifyRow, error_row


def pullback(mode: str, fun, diff, cots):
    return (refs.reverse if mode == "reverse" else refs.forward)(fun, diff, cots)


def transforms(setup: Setup, dtype, rule_fn, ref_fn, diff, cots, rule) -> list[VerifyRow]:
    rows = []
    for name in setup.transforms:
        try:
            rows.append(_transform(name, setup, dtype, rule_fn, ref_fn, diff, cots, rule))
        except Exception as e:  # noqa: BLE001 - reported as the row's ERROR
            rows.append(error_row(dtype, name, e))
    return rows


def _transform(name, setup, dtype, rule_fn, ref_fn, diff, cots, rule) -> VerifyRow:
    diff_leaves = [leaf for leaf in setup.leaves if leaf.kind == "diff"]
    rtol = setup.rtol.get(dtype, default_rtol(dtype, "numerical"))
    c0 = [c[:1] for c in cots]
    if name == "jit":
        # The compiled rule (``rule``) against the same rule run eagerly.
        with jax.disable_jit():
            got = pullback(setup.rule_mode, rule_fn, diff, c0)
        want = [np.asarray(r[:1]) for r in rule]
        what = "jit = eager"
    elif name == "vmap":
        # Two examples at once (the same inputs, the first two cotangents) against the
        # per-example pullbacks computed above.
        batched = [jnp.stack([d, d]) for d in diff]
        cots2 = [c[:2] for c in cots]

        def one(d, c):
            return [p[0] for p in pullback(setup.rule_mode, rule_fn, d, [ci[None] for ci in c])]

        got = jax.jit(jax.vmap(one))(batched, cots2)
        want = [np.asarray(r[:2]) for r in rule]
        what = "vmap = per example"
    elif name == "grad":
        rng = np.random.default_rng((setup.seed, 0x2D))
        v = [jnp.asarray(rng.standard_normal(d.shape).astype(d.dtype)) for d in diff]

        def h(fn):
            def weighted(d):
                pulled = refs.reverse(fn, d, c0)
                return sum(jnp.sum(p[0] * vi) for p, vi in zip(pulled, v, strict=True))

            return weighted

        # Whether each has a reverse-mode second derivative is decided by tracing it (a
        # custom_jvp rule has one where JAX can transpose its tangents), not by the mode
        # the first-order references used.
        for fn, whose in ((ref_fn, "the plain forward"), (rule_fn, "the rule")):
            why = refs.traceable(jax.grad(h(fn)), diff)
            if why:
                return VerifyRow(
                    dtype, "(all)", "", name, None, None, None, "n/a",
                    f"{whose} has no reverse-mode second derivative ({why})",
                )  # fmt: skip
        got, want = jax.jit(jax.grad(h(rule_fn)))(diff), jax.jit(jax.grad(h(ref_fn)))(diff)
        got, want = [np.asarray(g)[None] for g in got], [np.asarray(w)[None] for w in want]
        what = "2nd order = plain's"
    else:  # pragma: no cover - validated in verify
        raise ValueError(name)
    got = [np.asarray(g) for g in got]
    scale = max((float(np.max(np.abs(w), initial=0.0)) for w in want), default=0.0)
    floor = setup.atol.get(dtype, default_atol(dtype, scale))
    comps = [compare(g, w, rtol, floor) for g, w in zip(got, want, strict=True)]
    bad = next((j for j, c in enumerate(comps) if not c.passed), None)
    j = bad if bad is not None else int(np.argmax([c.rel for c in comps]))
    c = comps[j]
    status = "PASS" if bad is None else "FAIL"
    leaf = diff_leaves[j]
    return VerifyRow(dtype, leaf.argument, leaf.path, name, c, None, None, status,
                     what if bad is None else f"{what} fails: {c.reason}")  # fmt: skip
