"""What the throughput benchmarks share: a model's architecture with random weights, the device's clock and peak
memory, and model-FLOP utilisation."""

from __future__ import annotations

import resource
import shutil
from pathlib import Path

import torch

from selm.models.precision import compute_device

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets, by a part of the device's name;
# the first match wins, so the PCIe H100 comes before the SXM one.
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0}

# SmolLM2-1.7B's shape on SmolLM2-135M's config (same vocabulary, tokenizer and chat template)
SMOLLM2_1_7B = (
    "hidden_size=2048,intermediate_size=8192,num_hidden_layers=24,num_attention_heads=32,num_key_value_heads=32"
)


def random_model(path: str, dtype: str = "float32", arch: str = ""):
    """The architecture of the model at ``path`` (with ``arch``'s ``key=value,...`` overrides) with random weights,
    on the compute device, and its tokenizer (left padding): throughput does not depend on the weights, so a folder
    with only ``config.json`` and the tokenizer's files (``skeleton``) is enough."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(path)
    for item in filter(None, arch.split(",")):
        key, value = item.split("=")
        setattr(config, key, type(getattr(config, key))(value))
    torch.manual_seed(0)
    with torch.device(compute_device()):  # initialised where it runs: a 1.7B model on a CPU takes a while
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype)).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    return model, tokenizer


def skeleton(model_dir: str | Path, out: str | Path) -> Path:
    """A copy of a model folder without its weights (config, tokenizer, chat template: a few MB), which
    ``random_model`` reads on a machine that does not have the model."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for f in Path(model_dir).iterdir():
        if f.is_file() and f.suffix not in (".safetensors", ".bin", ".gguf", ".pt"):
            shutil.copy2(f, out / f.name)
    return out


def sync() -> None:
    """Waits for the GPU's queued work, so a clock read after it measures the work (a no-op on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_memory_mib() -> float:
    """The GPU's peak allocated memory where there is one, else this process's peak resident memory."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def peak_flops() -> float | None:
    """The GPU's dense bf16 peak in FLOP/s, None on a CPU or a GPU not in ``PEAK_BF16_TFLOPS``."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((tf * 1e12 for part, tf in PEAK_BF16_TFLOPS.items() if part in name), None)


def training_mfu(params: int, useful_tokens_per_s: float) -> float | None:
    """Model-FLOP utilisation of preference training: 8·N FLOPs per useful token — 6N for the policy's forward and
    backward, 2N for the reference's forward once per round — over the device's bf16 peak. Useful tokens count a
    pair's prompt once (its chosen and rejected replies share it), whatever a trainer does with it; N counts every
    parameter (tied embeddings once: as the LM head they are a matmul)."""
    peak = peak_flops()
    return None if peak is None else 8 * params * useful_tokens_per_s / peak
