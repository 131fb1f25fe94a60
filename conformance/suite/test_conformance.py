"""The conformance suite: one test per property, parametrised by backend, dtype and device.

Collected by the plugin when pytest runs with ``--backend``; see conformance/properties.py.
"""

from conformance.runner import run_property


def test_oracle_match(conformance_target):
    run_property("P1", conformance_target)


def test_trajectory(conformance_target):
    run_property("P2", conformance_target)


def test_lr_schedule(conformance_target):
    run_property("P3", conformance_target)


def test_no_spurious_nonfinite(conformance_target):
    run_property("P4", conformance_target)


def test_ieee_propagation(conformance_target):
    run_property("P5", conformance_target)


def test_inputs_not_mutated(conformance_target):
    run_property("P6", conformance_target)


def test_independence(conformance_target):
    run_property("P7", conformance_target)


def test_layout_invariance(conformance_target):
    run_property("P8", conformance_target)


def test_maximize(conformance_target):
    run_property("P9", conformance_target)


def test_complex(conformance_target):
    run_property("P10", conformance_target)


def test_state(conformance_target):
    run_property("P11", conformance_target)


def test_determinism(conformance_target):
    run_property("P12", conformance_target)


def test_invalid_hparams(conformance_target):
    run_property("P13", conformance_target)
