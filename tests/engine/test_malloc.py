"""The training loop keeps freed CPU memory for the next step (glibc's thresholds raised once)."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="glibc malloc only")

# 40 MB blocks lie above glibc's largest automatic mmap threshold (32 MB), so by default each one
# is mapped afresh and its pages fault in again; kept in the heap, later blocks reuse them.
_PROBE = textwrap.dedent("""
    import resource, torch
    from trainhub.engine.malloc import retain_freed_memory
    applied = retain_freed_memory()
    faults = []
    for _ in range(8):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.empty(10_000_000).fill_(1.0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    import trainhub.engine.malloc as m
    print(applied, sum(faults[4:]), m.applied_mmap_threshold)
""")


def _probe(**env) -> tuple[bool, int, str]:
    own = ("LD_PRELOAD", "GLIBC_TUNABLES", "TRAINHUB_MALLOC_TUNING")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in own}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0] == "True", int(out[1]), out[2]


def test_freed_blocks_are_reused_without_page_faults():
    applied, faults, threshold = _probe()
    assert applied
    if threshold != str(64 << 20):
        pytest.skip(f"this glibc takes an mmap threshold of {threshold} bytes only: 40 MB blocks stay mapped")
    assert faults < 1_000  # four fresh 40 MB blocks would be ~40,000 pages


def test_opt_out_and_the_users_own_malloc_settings_are_left_alone():
    applied, faults, _ = _probe(TRAINHUB_MALLOC_TUNING="0")
    assert not applied and faults > 20_000
    applied, _, _ = _probe(MALLOC_MMAP_THRESHOLD_="131072")
    assert not applied
