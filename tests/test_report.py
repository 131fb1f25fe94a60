"""Report verdicts: a backend with nothing testable here is never reported as conformant."""

from conformance.report import verdict


def _r(status: str) -> dict:
    return {"status": status}


def test_verdicts():
    assert verdict([_r("pass"), _r("unsupported")]) == "conformant"
    assert verdict([_r("known"), _r("unsupported")]) == "conformant"
    assert verdict([_r("pass"), _r("fail")]) == "nonconformant"
    assert verdict([_r("pass"), _r("error")]) == "nonconformant"
    assert verdict([_r("pass")], interrupted=True) == "nonconformant"
    # Nothing ran (e.g. a CUDA-only path on a CPU machine): unsupported, not a pass.
    assert verdict([_r("unsupported"), _r("unsupported")]) == "unsupported"
    assert verdict([]) == "unsupported"
