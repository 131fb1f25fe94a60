"""P14: the parity figure tells identical code paths from different ones."""

from conformance.parity import markdown, parity
from implementations.torch_backends import Foreach, ForLoop
from tests.mutants import MUTANTS


def test_torch_paths_are_bit_identical_and_a_mutant_is_not():
    rows = parity([ForLoop(), Foreach(), MUTANTS["sign_error"]()], n_cases=6)
    by_pair = {(r["a"], r["b"], r["dtype"]): r for r in rows}
    same = by_pair["torch.forloop", "torch.foreach", "float64"]
    assert same["cases"] == 6 and same["bit_identical"] == 1.0
    assert same["max_first_step_diff_over_bound"] == 0.0
    wrong = by_pair["torch.forloop", "mutant.sign_error", "float64"]
    assert wrong["bit_identical"] == 0.0 and wrong["max_first_step_diff_over_bound"] > 1e6
    assert "| `torch.forloop` | `torch.foreach` | float64 | 6 | 100% | 0 |" in markdown(rows)
