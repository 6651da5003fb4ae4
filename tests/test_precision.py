"""bf16-mixed on CPUs without oneDNN bf16 recurrent kernels: the LSTM runs in float32, once said."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import warnings, torch
from regkit.networks.rnn import RecurrentStack
net = RecurrentStack("lstm", 8, 8, num_layers=2)
x = torch.randn(3, 5, 8)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for _ in range(2):
            out, (h, c) = net(x)
            out.float().sum().backward()
print(out.dtype, len([w for w in caught if "float32" in str(w.message)]))
"""


def run(env_extra: dict[str, str]) -> str:
    env = {**os.environ, **env_extra}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_lstm_under_bf16_autocast_runs_on_an_avx2_only_cpu_in_float32_and_says_so_once() -> None:
    assert run({"ONEDNN_MAX_CPU_ISA": "AVX2"}) == "torch.float32 1"


def test_lstm_under_bf16_autocast_stays_bf16_where_the_cpu_has_the_kernel() -> None:
    import torch

    from regkit.networks.precision import cpu_bf16_supported

    if not cpu_bf16_supported(torch.nn.LSTM):
        pytest.skip("this CPU itself lacks the oneDNN bf16 LSTM kernel")
    assert run({}) == "torch.bfloat16 0"



PROBE = """
import sys, torch
from regkit.networks.precision import cpu_bf16_supported
torch.manual_seed(0)
expected = torch.rand(3)
torch.manual_seed(0)
mode = sys.argv[1]
with (torch.inference_mode() if mode == "inference_mode" else torch.no_grad() if mode == "no_grad" else torch.enable_grad()):
    answer = cpu_bf16_supported(torch.nn.LSTM)   # the first call of this process
print(answer, torch.equal(torch.rand(3), expected))
"""


def probe(mode: str) -> str:
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_the_bf16_probe_answers_the_same_whatever_grad_mode_it_is_first_asked_in_and_draws_no_random_numbers():
    # Its first call is typically in the sanity-check validation, under no_grad / inference mode:
    # a kept False from there ran LSTMs in float32 on CPUs that have the bf16 kernel. On an AVX2-only
    # CPU every answer is False. "True" after the answer: the global random stream is untouched.
    outside = probe("grad")
    assert outside.endswith(" True")
    assert probe("inference_mode") == probe("no_grad") == outside
