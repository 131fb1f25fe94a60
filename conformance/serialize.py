"""Cases and states to and from JSON, exactly (counterexamples that replay bit for bit).

Arrays are stored as their raw bytes (base64, little-endian, C order) with dtype and shape, plus a
readable list of values when small.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from conformance.case import Case, dtype_name, np_dtype
from spec.rmsprop import HParams, ParamState

_READABLE_MAX = 16


def array_to_json(a: np.ndarray | None) -> dict[str, Any] | None:
    if a is None:
        return None
    a = np.array(a, order="C")  # not ascontiguousarray: it makes 0-d arrays 1-d
    le = a.astype(a.dtype.newbyteorder("<")) if a.dtype.byteorder == ">" else a
    out: dict[str, Any] = {
        "dtype": dtype_name(a.dtype),
        "shape": list(a.shape),
        "data": base64.b64encode(le.tobytes()).decode("ascii"),
    }
    if a.size <= _READABLE_MAX:
        flat = a.astype(np.complex128 if np.iscomplexobj(a) else np.float64).ravel()
        out["values"] = [repr(complex(x)) if np.iscomplexobj(a) else repr(float(x)) for x in flat]
    return out


def array_from_json(d: dict[str, Any] | None) -> np.ndarray | None:
    if d is None:
        return None
    dt = np_dtype(d["dtype"])
    raw = base64.b64decode(d["data"])
    return np.frombuffer(raw, dtype=dt.newbyteorder("<")).astype(dt).reshape(d["shape"]).copy()


def state_to_json(st: ParamState) -> dict[str, Any]:
    return {"step": int(st.step), "square_avg": array_to_json(st.square_avg),
            "grad_avg": array_to_json(st.grad_avg),
            "momentum_buffer": array_to_json(st.momentum_buffer)}


def state_from_json(d: dict[str, Any]) -> ParamState:
    return ParamState(step=int(d["step"]), square_avg=array_from_json(d["square_avg"]),
                      grad_avg=array_from_json(d["grad_avg"]),
                      momentum_buffer=array_from_json(d["momentum_buffer"]))


def _float(x: float) -> Any:
    # float.hex keeps every bit; JSON numbers would too, except for non-finite values.
    return float(x).hex()


def case_to_json(case: Case) -> dict[str, Any]:
    hp = case.hp.to_dict()
    for key in ("lr", "alpha", "eps", "weight_decay", "momentum", "initial_square_avg"):
        hp[key] = _float(hp[key])
    return {
        "hparams": hp,
        "params": [array_to_json(p) for p in case.params],
        "grads": [[array_to_json(g) for g in gs] for gs in case.grads],
        "lrs": None if case.lrs is None else [_float(x) for x in case.lrs],
        "device": case.device,
        "layouts": None if case.layouts is None else list(case.layouts),
        "initial_state": None if case.initial_state is None
        else [state_to_json(s) for s in case.initial_state],
    }


def case_from_json(d: dict[str, Any]) -> Case:
    hp = dict(d["hparams"])
    for key in ("lr", "alpha", "eps", "weight_decay", "momentum", "initial_square_avg"):
        hp[key] = float.fromhex(hp[key]) if isinstance(hp[key], str) else float(hp[key])
    return Case(
        hp=HParams(**hp),
        params=tuple(array_from_json(p) for p in d["params"]),
        grads=tuple(tuple(array_from_json(g) for g in gs) for gs in d["grads"]),
        lrs=None if d.get("lrs") is None else tuple(float.fromhex(x) for x in d["lrs"]),
        device=d.get("device", "cpu"),
        layouts=None if d.get("layouts") is None else tuple(d["layouts"]),
        initial_state=None if d.get("initial_state") is None
        else tuple(state_from_json(s) for s in d["initial_state"]),
    )
