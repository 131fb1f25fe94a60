"""How a certification's targets are shared among pytest-xdist workers (docs/architecture.md §9).

A worker keeps what it compiled: torch.compile's graphs (one per case structure and
``weight_decay``, ~1.5–4 s each, and not reusable from disk: inductor's FX graph cache stays
off, docs/findings.md), JAX's jitted steps, numba's specialisations. The targets of one backend
and one dtype draw the same structures, so they compile the same programs. xdist's default
(``load``) spreads them over every worker, and each worker compiles them again:
torch.compile's eleven float32 targets took 179 test-seconds on two workers and 71 s in one
process (2026-12-07).

:class:`TargetScheduling` sends all the suite's tests of one ``backend-dtype-device`` (a test's
parameter id) to one worker, largest group first (xdist's ``loadscope`` ordering), every other
test alone. Unlike ``loadscope``, a test that crashes its worker is not run again on the next,
and the worker that replaces it does not wait forever on a group of one test.
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadScopeScheduling


def is_suite_test(nodeid: str) -> bool:
    """Whether ``nodeid`` is a test of the conformance suite (not one of the user's beside it)."""
    return "/suite/" in nodeid or nodeid.startswith("test_conformance.py")


def target_group(nodeid: str) -> str:
    """The scheduling unit of a test: the suite's parameter id ``backend-dtype-device`` (the
    same for every property), or the node id of a test without one."""
    head, bracket, param = nodeid.rpartition("[")
    if not (bracket and param.endswith("]") and is_suite_test(head)):
        return nodeid
    return param[:-1]


class TargetScheduling(LoadScopeScheduling):
    """``loadscope`` with :func:`target_group` as the scope."""

    def _split_scope(self, nodeid: str) -> str:
        return target_group(nodeid)

    def schedule(self) -> None:
        rescheduling = self.collection is not None
        super().schedule()
        if rescheduling:
            # A worker that replaces a crashed one is given one unit; given a unit of one test,
            # it would wait for the next forever (a worker runs a test once it knows the next).
            # The first scheduling gives each worker two units for that reason (xdist #277).
            for node in self.nodes:
                self._reschedule(node)

    def remove_node(self, node: Any) -> str | None:
        """As ``LoadScopeScheduling.remove_node``, with the test that was running when the node
        died marked done before its group is queued again: xdist reports it as crashed, and
        ``loadscope`` would run it again, crash the next worker, and so on."""
        workload = self.assigned_work.pop(node)
        pending = [(unit, nodeid) for unit in workload.values()
                   for nodeid, done in unit.items() if not done]
        if not pending:
            return None
        unit, crashed = pending[0]
        unit[crashed] = True
        self.workqueue.update({scope: unit for scope, unit in workload.items()
                               if not all(unit.values())})
        for other in self.assigned_work:
            self._reschedule(other)
        return crashed
