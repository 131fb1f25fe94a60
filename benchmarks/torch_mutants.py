"""Mutants of PyTorch's own ``torch/optim/rmsprop.py``, certified with the ``ci`` effort.

    python -m benchmarks.torch_mutants [--effort ci] [--only NAME ...]

Each mutant is one textual edit of the installed file (drawn from
../shared/reference/bug-classes.md), made in both code paths (``_single_tensor_rmsprop`` and
``_multi_tensor_rmsprop``: certified on the for-loop) and in the foreach path only (certified on
foreach). Every edit asserts that it applied; the patched copy is loaded from a temporary
directory as a module of its own (the installed file is never written). Spec-correct edits
(forms the spec permits) must pass.

A mutant's targets run in a fixed order (cheap properties first) until one fails that the
project's known-deviations file does not excuse; the benchmark prints the property and rule
named, whether the counterexample passes on unpatched torch (the catch is the bug's own), and
caught / total.

Beside it, the anchor: PyTorch's own ``test_optim.py -k RMSprop``. The stored public copy of
test_optim.py predates torch 2.x (it imports ``torch._six`` and ``torch.optim._multi_tensor``) and
does not run on the installed torch, so its figures on such mutants are quoted from issue 11
(measured there), marked as quoted. ``--anchor-proxy`` runs the two checks that suite makes on
RMSprop (foreach equals the for-loop; the loss goes down), as written here, on the same mutants.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.optim.rmsprop as installed

from conformance import deviations
from conformance.backend import Backend
from conformance.guard import BackendError
from conformance.properties import BY_ID, PropertyFailure, targets
from conformance.result import new_result
from conformance.runner import Target, run_property
from implementations.drivers.config import DriverConfig
from implementations.drivers.torch_optim import TorchOptimBackend

ROOT = Path(__file__).resolve().parents[1]
KNOWN = ROOT / "known-deviations.toml"
SOURCE = Path(installed.__file__)
# Cheap, sharp properties first; the slow hazard search (P4) and validation last.
ORDER = ("P1", "P2", "P3", "P11", "P6", "P7", "P9", "P10", "P12", "P8", "P5", "P4", "P13")
DTYPE_ORDER = ("float64", "float32", "complex128", "complex64", "float16", "bfloat16", None)
# PyTorch's test_optim.py -k RMSprop on 20 such mutants, measured in issue 11 (not here).
QUOTED_ANCHOR = {"both": (8, 20), "foreach": (17, 20)}

_SINGLE = "def _single_tensor_rmsprop("
_MULTI = "def _multi_tensor_rmsprop("
_END = "@_disable_dynamo_if_unsupported(single_tensor_fn=_single_tensor_rmsprop)"


@dataclasses.dataclass(frozen=True)
class Edit:
    old: str
    new: str
    count: int = 1  # occurrences of ``old`` in the function, all replaced


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    bug_class: str  # the row of bug-classes.md, or the spec rule that permits a correct form
    rule: str  # the rule the spec says it breaks; "" for a spec-correct form
    single: tuple[Edit, ...]
    multi: tuple[Edit, ...]

    @property
    def correct(self) -> bool:
        return not self.rule


def _e(old: str, new: str, count: int = 1) -> tuple[Edit, ...]:
    return (Edit(old, new, count),)


_WD_MULTI = """                grouped_grads = torch._foreach_add(  # type: ignore[assignment]
                    grouped_grads, grouped_params, alpha=weight_decay
                )"""
_CENTERED_MULTI = """            avg = torch._foreach_addcmul(
                grouped_square_avgs, grouped_grad_avgs, grouped_grad_avgs, value=-1
            )
            torch._foreach_sqrt_(avg)"""
_MOMENTUM_STEP_MULTI = """                torch._foreach_add_(
                    grouped_params, grouped_momentum_buffer_list, alpha=-lr
                )"""
_STALE_LR = """    if not hasattr(state_steps[0], "_first_lr"):
        state_steps[0]._first_lr = _to_scalar(lr)
    lr = state_steps[0]._first_lr"""

MUTANTS: tuple[Mutant, ...] = (
    Mutant("eps_dropped", "11", "R20",
           _e("            avg = avg.add_(eps)", "            avg = avg.add_(0.0)"),
           _e("torch._foreach_add_(avg, eps)", "torch._foreach_add_(avg, 0.0)", 2)),
    Mutant("sign_under_root", "3", "R20",
           _e("avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()",
              "avg = grad_avg.mul(grad_avg).sub_(square_avg).sqrt_()"),
           _e(_CENTERED_MULTI, "            avg = torch._foreach_sub(torch._foreach_mul("
              "grouped_grad_avgs, grouped_grad_avgs), grouped_square_avgs)\n"
              "            torch._foreach_sqrt_(avg)")),
    Mutant("eps_in_sqrt", "1", "R7",
           _e("            avg = avg.add_(eps)",
              "            avg = avg.square_().add_(eps).sqrt_()"),
           _e("torch._foreach_add_(avg, eps)", "avg = torch._foreach_sqrt(torch._foreach_add("
              "torch._foreach_mul(avg, avg), eps))", 2)),
    Mutant("alpha_swapped", "9", "R17",
           _e("square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)",
              "square_avg.mul_(1 - alpha).addcmul_(grad, grad, value=alpha)"),
           (Edit("torch._foreach_mul_(grouped_square_avgs, alpha)",
                 "torch._foreach_mul_(grouped_square_avgs, 1 - alpha)"),
            Edit("grouped_square_avgs, grouped_grads, grouped_grads, value=1 - alpha",
                 "grouped_square_avgs, grouped_grads, grouped_grads, value=alpha"))),
    Mutant("grad_avg_weight_swapped", "9", "R18",
           _e("grad_avg.lerp_(grad, 1 - alpha)", "grad_avg.lerp_(grad, alpha)"),
           _e("torch._foreach_lerp_(grouped_grad_avgs, grouped_grads, 1 - alpha)",
              "torch._foreach_lerp_(grouped_grad_avgs, grouped_grads, alpha)")),
    Mutant("state_in_numerator", "4", "R21",
           _e("param.addcdiv_(grad, avg, value=-lr)", "param.addcdiv_(square_avg, avg, value=-lr)"),
           _e("torch._foreach_addcdiv_(grouped_params, grouped_grads, avg, value=-lr)",
              "torch._foreach_addcdiv_(grouped_params, grouped_square_avgs, avg, value=-lr)")),
    Mutant("update_sign", "5", "R21",
           _e("param.addcdiv_(grad, avg, value=-lr)", "param.addcdiv_(grad, avg, value=lr)"),
           _e("torch._foreach_addcdiv_(grouped_params, grouped_grads, avg, value=-lr)",
              "torch._foreach_addcdiv_(grouped_params, grouped_grads, avg, value=lr)")),
    Mutant("momentum_ignored", "6", "R21",
           _e("param.add_(buf, alpha=-lr)", "param.addcdiv_(grad, avg, value=-lr)"),
           _e(_MOMENTUM_STEP_MULTI, "                torch._foreach_addcdiv_(grouped_params, "
              "grouped_grads, avg, value=-lr)")),
    Mutant("momentum_not_decayed", "6", "R21",
           _e("buf.mul_(momentum).addcdiv_(grad, avg)", "buf.addcdiv_(grad, avg)"),
           _e("torch._foreach_mul_(grouped_momentum_buffer_list, momentum)",
              "torch._foreach_mul_(grouped_momentum_buffer_list, 1.0)")),
    Mutant("lr_inside_momentum", "19", "R9",
           (Edit("buf.mul_(momentum).addcdiv_(grad, avg)",
                 "buf.mul_(momentum).addcdiv_(grad, avg, value=lr)"),
            Edit("param.add_(buf, alpha=-lr)", "param.add_(buf, alpha=-1.0)")),
           (Edit("torch._foreach_addcdiv_(grouped_momentum_buffer_list, grouped_grads, avg)",
                 "torch._foreach_addcdiv_(grouped_momentum_buffer_list, grouped_grads, avg, "
                 "value=lr)"),
            Edit("grouped_params, grouped_momentum_buffer_list, alpha=-lr",
                 "grouped_params, grouped_momentum_buffer_list, alpha=-1.0"))),
    Mutant("weight_decay_sign", "7", "R16",
           _e("grad = grad.add(param, alpha=weight_decay)",
              "grad = grad.add(param, alpha=-weight_decay)"),
           _e("grouped_grads, grouped_params, alpha=weight_decay",
              "grouped_grads, grouped_params, alpha=-weight_decay", 2)),
    Mutant("weight_decay_decoupled", "7", "R10",
           _e("grad = grad.add(param, alpha=weight_decay)",
              "param.mul_(1 - lr * weight_decay)"),
           (Edit(_WD_MULTI, "                torch._foreach_mul_(grouped_params, "
                 "1 - lr * weight_decay)"),
            Edit("torch._foreach_add_(grouped_grads, grouped_params, alpha=weight_decay)",
                 "torch._foreach_mul_(grouped_params, 1 - lr * weight_decay)"))),
    Mutant("maximize_ignored", "8", "R16",
           _e("grad = grad if not maximize else -grad", "grad = grad"),
           _e("grouped_grads = torch._foreach_neg(grouped_grads)  # type: ignore[assignment]",
              "grouped_grads = list(grouped_grads)")),
    Mutant("centered_ignored", "3", "R20",
           _e("avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()",
              "avg = square_avg.sqrt()"),
           _e(_CENTERED_MULTI, "            avg = torch._foreach_sqrt(grouped_square_avgs)")),
    Mutant("centered_plus", "3", "R20",
           _e("avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()",
              "avg = square_avg.addcmul(grad_avg, grad_avg, value=1).sqrt_()"),
           _e("grouped_square_avgs, grouped_grad_avgs, grouped_grad_avgs, value=-1",
              "grouped_square_avgs, grouped_grad_avgs, grouped_grad_avgs, value=1")),
    Mutant("sqrt_in_bfloat16", "11", "R20",
           _e("avg = square_avg.sqrt()",
              "avg = square_avg.to(torch.bfloat16).sqrt().to(square_avg.dtype)"),
           _e("avg = torch._foreach_sqrt(grouped_square_avgs)",
              "avg = [a.to(torch.bfloat16).sqrt().to(a.dtype) for a in grouped_square_avgs]")),
    Mutant("first_param_only", "13", "R23",
           _e("    for i, param in enumerate(params):",
              "    for i, param in enumerate(params[:1]):"),
           _e("    if len(params) == 0:\n        return\n",
              "    if len(params) == 0:\n        return\n    params, grads, square_avgs, "
              "state_steps = params[:1], grads[:1], square_avgs[:1], state_steps[:1]\n"
              "    grad_avgs, momentum_buffer_list = grad_avgs[:1], momentum_buffer_list[:1]\n")),
    Mutant("step_frozen", "15", "R15",
           _e("        step += 1", "        step += 0"),
           _e('grouped_state_steps, torch.tensor(1.0, device="cpu"), alpha=1.0',
              'grouped_state_steps, torch.tensor(1.0, device="cpu"), alpha=0.0')),
    Mutant("stale_lr", "19", "R22",
           _e("    if not torch.jit.is_scripting():\n        lr = _to_scalar(lr)", _STALE_LR),
           _e("    lr = _to_scalar(lr)", _STALE_LR)),
    Mutant("writes_into_grad", "R24", "R24",
           _e("grad = grad.add(param, alpha=weight_decay)",
              "grad = grad.add_(param, alpha=weight_decay)"),
           _e(_WD_MULTI, "                torch._foreach_add_(grouped_grads, grouped_params, "
              "alpha=weight_decay)")),
    # Spec-correct forms: each must pass.
    Mutant("clamp_variance", "R20/R30", "",
           _e("avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()",
              "avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).clamp_(min=0).sqrt_()"),
           _e("            torch._foreach_sqrt_(avg)\n",
              "            torch._foreach_clamp_min_(avg, 0.0)\n"
              "            torch._foreach_sqrt_(avg)\n")),
    Mutant("square_avg_lerp", "R17", "",
           _e("square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)",
              "square_avg.lerp_(grad * grad, 1 - alpha)"),
           _e("""        torch._foreach_mul_(grouped_square_avgs, alpha)
        torch._foreach_addcmul_(
            grouped_square_avgs, grouped_grads, grouped_grads, value=1 - alpha
        )""", """        torch._foreach_lerp_(grouped_square_avgs,
                             torch._foreach_mul(grouped_grads, grouped_grads), 1 - alpha)""")),
    Mutant("reciprocal_multiply", "R31b", "",
           _e("param.addcdiv_(grad, avg, value=-lr)",
              "param.addcmul_(grad, avg.reciprocal(), value=-lr)"),
           _e("torch._foreach_addcdiv_(grouped_params, grouped_grads, avg, value=-lr)",
              "torch._foreach_addcmul_(grouped_params, grouped_grads, "
              "torch._foreach_reciprocal(avg), value=-lr)")),
)
BY_NAME = {m.name: m for m in MUTANTS}
VARIANTS = ("both", "foreach")  # which functions are edited; "both" is certified on the for-loop


def patched_source(mutant: Mutant, variant: str, source: str | None = None) -> str:
    """The installed rmsprop.py with the mutant's edits (``variant`` "both" or "foreach");
    AssertionError when an edit does not apply exactly as written."""
    text = SOURCE.read_text(encoding="utf-8") if source is None else source
    i, j, k = text.index(_SINGLE), text.index(_MULTI), text.index(_END)
    head, single, multi, tail = text[:i], text[i:j], text[j:k], text[k:]
    relative = "from .optimizer import ("
    assert head.count(relative) == 1, "rmsprop.py no longer imports from .optimizer"
    head = head.replace(relative, "from torch.optim.optimizer import (")

    def apply(body: str, edits: tuple[Edit, ...], where: str) -> str:
        for e in edits:
            found = body.count(e.old)
            assert found == e.count, (f"{mutant.name}: {where}: expected {e.count} occurrence(s) "
                                      f"of {e.old!r}, found {found}")
            body = body.replace(e.old, e.new)
        return body

    if variant == "both":
        single = apply(single, mutant.single, "_single_tensor_rmsprop")
    multi = apply(multi, mutant.multi, "_multi_tensor_rmsprop")
    return head + single + multi + tail


def load_mutant(mutant: Mutant, variant: str, directory: Path) -> ModuleType:
    """The patched copy, written into ``directory`` and imported as a module of its own."""
    name = f"rmsprop_mutant_{mutant.name}_{variant}"
    path = directory / f"{name}.py"
    path.write_text(patched_source(mutant, variant), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def backend_for(optimizer_cls: type, variant: str, name: str) -> Backend:
    """The generic torch driver over ``optimizer_cls`` on the path the variant edits."""
    return TorchOptimBackend(optimizer_cls, DriverConfig(profile="torch",
                                                         fixed={"foreach": variant == "foreach"}),
                             name)


@dataclasses.dataclass
class Verdict:
    caught: bool
    prop: str = ""
    dtype: str | None = None
    rule: str = ""
    cause: str = ""
    own: bool | None = None  # the counterexample passes on unpatched torch
    known: int = 0  # failures excused by the known-deviations file on the way
    seconds: float = 0.0


def certify(backend: Backend, effort: str, known: list[deviations.Deviation],
            reference: Backend, workdir: Path) -> Verdict:
    """Run the targets in ORDER until one fails unexcused (a catch) or all pass or are known."""
    caps = backend.capabilities()
    start = time.perf_counter()
    verdict = Verdict(caught=False)
    plan = [(p, dt) for p in ORDER for dt, _ in sorted(targets(BY_ID[p], caps),
                                                       key=lambda t: DTYPE_ORDER.index(t[0]))]
    for prop_id, dtype in plan:
        record = new_result(BY_ID[prop_id], backend.name, dtype, "cpu")
        target = Target(backend.name, backend, caps, dtype, "cpu", effort, workdir, record,
                        nodeid=f"torch-mutant::{backend.name}::{prop_id}::{dtype}")
        try:
            run_property(prop_id, target)
            continue
        except PropertyFailure as failure:
            case = failure.case
        except BackendError as exc:
            record.update(status="error", rule="error", message=str(exc))
            case = None
        except pytest.skip.Exception:  # unsupported target
            continue
        if any(d.matches(backend=backend.name, prop_id=prop_id, prop_name=BY_ID[prop_id].name,
                         dtype=dtype, device="cpu", rule=record.get("rule"),
                         cause=record.get("cause")) for d in known):
            verdict.known += 1
            continue
        verdict = Verdict(True, prop_id, dtype, record.get("rule", ""), record.get("cause", ""),
                          _passes_on(reference, prop_id, case), verdict.known)
        break
    verdict.seconds = time.perf_counter() - start
    return verdict


def _passes_on(reference: Backend, prop_id: str, case) -> bool | None:
    if case is None:
        return None
    try:
        BY_ID[prop_id].check(reference, reference.capabilities(), case)
    except (PropertyFailure, BackendError):
        return False
    return True


def anchor_proxy(optimizer_cls: type) -> bool:
    """The two checks PyTorch's suite makes on RMSprop, as written here (not PyTorch's code):
    foreach equals the for-loop on a few steps of every flag combination, and the loss of a
    small least-squares problem goes down. True when the mutant is caught."""
    gen = torch.Generator().manual_seed(0)
    for centered in (False, True):
        for momentum in (0.0, 0.9):
            for weight_decay in (0.0, 0.1):
                for maximize in (False, True):
                    kw = dict(lr=1e-2, centered=centered, momentum=momentum,
                              weight_decay=weight_decay, maximize=maximize)
                    for dtype in (torch.float64, torch.complex128):
                        w0 = torch.randn(5, 3, dtype=dtype, generator=gen)
                        grads = [torch.randn(5, 3, dtype=dtype, generator=gen) for _ in range(5)]
                        ends = []
                        for foreach in (False, True):
                            w = w0.clone().requires_grad_(True)
                            opt = optimizer_cls([w], foreach=foreach, **kw)
                            for g in grads:
                                w.grad = g.clone()
                                opt.step()
                            ends.append(w.detach().clone())
                        if not torch.allclose(ends[0], ends[1]) or not torch.isfinite(
                                torch.view_as_real(ends[1]) if dtype.is_complex
                                else ends[1]).all():
                            return True
    x, y = torch.randn(20, 5, generator=gen), torch.randn(20, generator=gen)
    for centered in (False, True):
        for foreach in (False, True):
            w = torch.zeros(5, requires_grad=True)
            opt = optimizer_cls([w], lr=1e-2, centered=centered, momentum=0.5, foreach=foreach)
            first = None
            for _ in range(200):
                opt.zero_grad()
                loss = ((x @ w - y) ** 2).mean()
                first = loss.item() if first is None else first
                loss.backward()
                opt.step()
            if not ((x @ w - y) ** 2).mean().item() < first:
                return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--effort", default="ci")
    parser.add_argument("--only", nargs="*", default=None, help="mutant names")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--anchor-proxy", action="store_true")
    args = parser.parse_args()
    known = deviations.load(KNOWN)
    chosen = [BY_NAME[n] for n in args.only] if args.only else list(MUTANTS)
    print(f"torch {torch.__version__}: mutants of {SOURCE} (installed file untouched)")
    print(f"{'mutant':25} {'variant':8} {'expect':6} {'verdict':8} {'prop':4} {'dtype':10} "
          f"{'rule':5} {'cause':17} {'own':5} {'known':5} {'s':>7}" +
          ("  proxy" if args.anchor_proxy else ""))
    tally: dict[str, list[int]] = {v: [0, 0, 0, 0] for v in args.variants}  # caught, bugs, ok, good
    proxy: dict[str, list[int]] = {v: [0, 0] for v in args.variants}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            reference = backend_for(torch.optim.RMSprop, variant, f"torch.{variant}")
            for m in chosen:
                module = load_mutant(m, variant, Path(tmp))
                backend = backend_for(module.RMSprop, variant, f"torch.mutant.{m.name}.{variant}")
                v = certify(backend, args.effort, known, reference, Path(tmp) / "cx")
                t = tally[variant]
                if m.correct:
                    t[2] += 1
                    t[3] += not v.caught
                else:
                    t[1] += 1
                    t[0] += v.caught
                verdict = ("FAIL" if v.caught else "pass") + ("" if v.caught != m.correct
                                                             else " (!)")
                line = (f"{m.name:25} {variant:8} {m.rule or 'pass':6} {verdict:8} {v.prop:4} "
                        f"{v.dtype or '-':10} {v.rule:5} {v.cause or '-':17} "
                        f"{'-' if v.own is None else 'yes' if v.own else 'NO':5} {v.known:5d} "
                        f"{v.seconds:7.1f}")
                if args.anchor_proxy and not m.correct:
                    hit = anchor_proxy(module.RMSprop)
                    proxy[variant][0] += hit
                    proxy[variant][1] += 1
                    line += f"  {'caught' if hit else 'missed'}"
                print(line, flush=True)
    for variant, (caught, bugs, ok, good) in tally.items():
        quoted = QUOTED_ANCHOR[variant]
        print(f"{variant}: caught {caught}/{bugs} mutants; spec-correct forms passed {good}/{ok}; "
              f"PyTorch's test_optim.py -k RMSprop: {quoted[0]}/{quoted[1]} (quoted from issue "
              "11, measured there on its own 20 mutants; not run here)"
              + (f"; anchor proxy: {proxy[variant][0]}/{proxy[variant][1]}"
                 if args.anchor_proxy else ""))


if __name__ == "__main__":
    main()
