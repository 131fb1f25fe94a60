"""The seed's toy problem (reference/seed.md): L(x, y) = x² + 10·y², from (40, 20), 10 steps.

SGD (lr = 0.096) zig-zags across the valley in y and crawls in x; RMSProp (seed profile: lr = 3,
alpha = 0.9, eps = 1e-6 outside the root) walks evenly towards the minimum. Trajectories are
arrays of shape (steps + 1, 2): the start and the point after every step.

    python -m conformance.toyproblem docs/seed.png [--backend NAME ...]

draws the seed's picture: the loss surface in 3-D with the SGD (red) and RMSProp (blue)
trajectories, and each named backend's trajectory on top.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import numpy as np

from conformance.backend import Backend
from conformance.case import Case, np_dtype
from spec import rmsprop

START = (40.0, 20.0)
SGD_LR = 0.096


def loss(x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
    """L(x, y) = x² + 10·y²."""
    return np.asarray(x) ** 2 + 10 * np.asarray(y) ** 2


def grad(p: np.ndarray) -> np.ndarray:
    """∇L at p = (x, y): (2x, 20y), in p's dtype."""
    p = np.asarray(p)
    return p * np.asarray([2, 20], dtype=p.dtype)


def sgd_trajectory(lr: float = SGD_LR, steps: int = 10,
                   start: tuple[float, float] = START) -> np.ndarray:
    """Plain gradient descent p ← p − lr·∇L(p), in float64."""
    points = [np.asarray(start, dtype=np.float64)]
    for _ in range(steps):
        points.append(points[-1] - lr * grad(points[-1]))
    return np.stack(points)


def rmsprop_trajectory(hp: rmsprop.HParams | None = None, steps: int = 10,
                       start: tuple[float, float] = START) -> np.ndarray:
    """The oracle's RMSProp (default: the seed profile), one spec step per iteration."""
    hp = rmsprop.HParams.from_profile("seed") if hp is None else hp
    p = (np.asarray(start, dtype=np.float64),)
    state = rmsprop.init_state(p, hp)
    points = [p[0]]
    for _ in range(steps):
        p, state = rmsprop.step(p, (grad(p[0]),), state, hp)
        points.append(p[0])
    return np.stack(points)


def backend_trajectory(backend: Backend, steps: int = 10, dtype: str = "float64",
                       start: tuple[float, float] = START) -> np.ndarray | None:
    """A backend's RMSProp on the toy problem, with the seed's lr, alpha and eps.

    The gradient depends on the point reached, so the backend is driven one step at a time:
    with "state_load" and "state_readout", each call runs one step from the state the previous
    call returned; otherwise each call replays the whole run so far from the start (k calls of
    1 … k steps, fine for ten steps). Returns None if the backend lacks ``dtype``.
    """
    caps = backend.capabilities()
    if dtype not in caps.dtypes:
        return None
    hp = caps.hparams(lr=3.0, alpha=0.9, eps=1e-6)
    dt = np_dtype(dtype)
    p0 = np.asarray(start, dtype=dt)
    points = [p0]
    if {"state_load", "state_readout"} <= caps.features:
        p, state = p0, None
        for _ in range(steps):
            traj = backend.run(Case(hp, (p,), ((grad(p),),), initial_state=state))
            p, state = traj.params[0][0], traj.states[0]
            points.append(p)
    else:
        grads: list[tuple[np.ndarray]] = []
        for _ in range(steps):
            grads.append((grad(points[-1]),))
            points.append(backend.run(Case(hp, (p0,), tuple(grads))).params[-1][0])
    return np.stack([np.asarray(q, dtype=np.float64) for q in points])


def render_png(path: str, extra_trajectories: Mapping[str, np.ndarray] | None = None) -> None:
    """The seed's picture: the loss surface in 3-D with SGD (red), RMSProp (blue) and any extra
    (backend) trajectories, beside a top view of the same paths on the contour lines."""
    import matplotlib  # noqa: PLC0415  (plots are an optional extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    xs, ys = np.linspace(-45, 45, 91), np.linspace(-25, 25, 61)
    gx, gy = np.meshgrid(xs, ys)
    gz = loss(gx, gy)
    fig = plt.figure(figsize=(14, 6.5), dpi=100)
    ax3 = fig.add_subplot(1, 2, 1, projection="3d")
    ax2 = fig.add_subplot(1, 2, 2)
    ax3.plot_surface(gx, gy, gz, cmap="viridis", alpha=0.25, linewidth=0, antialiased=True)
    levels = [10, 100, 400, 1000, 2000, 3500, 5500, 8000]
    ax2.contour(gx, gy, gz, levels=levels, cmap="viridis", linewidths=0.8)

    paths = [(f"SGD, lr={SGD_LR}", sgd_trajectory(), dict(color="red", marker="o", lw=2.2)),
             ("RMSProp (oracle): lr=3, alpha=0.9, eps=1e-6", rmsprop_trajectory(),
              dict(color="blue", marker="o", lw=2.2))]
    colors = ["darkorange", "green", "purple", "black", "magenta", "brown", "cyan", "olive"]
    for k, (name, points) in enumerate((extra_trajectories or {}).items()):
        paths.append((name, np.asarray(points, dtype=np.float64),
                      dict(color=colors[k % len(colors)], marker="x", lw=1.2, ls="--")))
    for label, pts, style in paths:
        kw = dict(color=style["color"], marker=style["marker"], linewidth=style["lw"],
                  linestyle=style.get("ls", "-"), markersize=5)
        # Lifted a little above the surface so that it does not hide the path.
        ax3.plot(pts[:, 0], pts[:, 1], loss(pts[:, 0], pts[:, 1]) * 1.02 + 50, label=label,
                 zorder=10, **kw)
        ax2.plot(pts[:, 0], pts[:, 1], label=label, **kw)
    for ax in (ax3, ax2):
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    ax3.set_zlabel("L(x, y)")
    ax3.view_init(elev=40, azim=-125)
    ax3.set_title("loss surface")
    ax2.plot([0], [0], marker="*", color="black", markersize=12, linestyle="none",
             label="minimum (0, 0)")
    ax2.set_xlim(-45, 45)
    ax2.set_ylim(-25, 25)
    ax2.set_aspect("equal")
    ax2.set_title("top view")
    ax2.legend(loc="lower left", fontsize=9, framealpha=0.9)
    fig.suptitle("L(x, y) = x² + 10·y², 10 steps from (40, 20): SGD zig-zags in y, "
                 "RMSProp evens out the step sizes")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Draw the seed's picture (SGD vs RMSProp).")
    parser.add_argument("path", help="output PNG file")
    parser.add_argument("--backend", action="append", default=[], metavar="NAME",
                        help="also draw this backend's trajectory (repeatable)")
    args = parser.parse_args(argv)
    from conformance import registry  # noqa: PLC0415  (only needed with --backend)

    extra = {}
    for name in args.backend:
        backend = registry.load(name)
        for dtype in ("float64", "float32"):  # the first of these the backend supports
            points = backend_trajectory(backend, dtype=dtype)
            if points is not None:
                extra[f"backend {name} ({dtype})"] = points
                break
    render_png(args.path, extra)


if __name__ == "__main__":
    main()
