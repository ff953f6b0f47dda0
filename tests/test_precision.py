"""Precision follows the hardware: "auto" is bf16 only where the device computes bf16 natively. The decision is one
function (``selm.models.precision.choose``) fed the hardware's readings; here the readings of two real machines are
injected (an AVX2-only AMD EPYC and an AVX512-BF16 one, FACTS.md), and this machine's own readings drive real models
through the sampler, lm-eval's loader, the trainer and MLflow."""

import platform

import pytest
import torch

from selm import tracking
from selm.config import load_recipe
from selm.models.precision import Hardware, choose, detect, resolve

AVX2_EPYC = Hardware("cpu", "AVX2", native_bf16=False)  # torch.ops.mkldnn._is_mkldnn_bf16_supported() -> False
AVX512_BF16 = Hardware("cpu", "AVX512", native_bf16=True)
H200 = Hardware("cuda", "sm_90", native_bf16=True)
T4 = Hardware("cuda", "sm_75", native_bf16=False)  # bf16 only emulated before Ampere

AUTO = ["sampling.dtype=auto", "train.precision=auto", "eval.lm_eval.dtype=auto"]


def test_auto_is_bf16_only_where_the_device_computes_it_natively():
    assert choose("auto", AVX2_EPYC) == "float32"
    assert choose("auto", AVX512_BF16) == "bfloat16"
    assert choose("auto", H200) == "bfloat16"
    assert choose("auto", T4) == "float32"


def test_an_explicit_precision_is_honoured_on_any_hardware():
    for hw in (AVX2_EPYC, AVX512_BF16, T4):
        assert choose("bfloat16", hw) == choose("bf16", hw) == "bfloat16"
        assert choose("float32", hw) == choose("fp32", hw) == "float32"
        assert choose("float16", hw) == "float16"
    with pytest.raises(ValueError, match="unknown precision 'bf61'"):
        choose("bf61", AVX2_EPYC)


def test_this_machine_is_read_from_torch():
    hw = detect("cpu")
    assert hw.device == "cpu" and hw.capability == torch.backends.cpu.get_cpu_capability()
    if platform.machine() == "x86_64":
        assert hw.native_bf16 == (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        if hw.capability == "AVX2":  # no AVX-512 at all: never native bf16
            assert not hw.native_bf16
    assert hw.describe().startswith(f"cpu {hw.capability}, ")


def test_auto_loads_samples_and_trains_in_what_this_machine_computes_natively(tiny_policy_dir):
    """The sampler's and lm-eval's policy weights, and the trainer's autocast, all follow ``resolve("auto")``."""
    from selm.models.loading import load_policy
    from selm.models.training import training_autocast, training_precision
    from selm.pipeline.components import Components

    expected = getattr(torch, resolve("auto", "cpu"))
    recipe = load_recipe(None, AUTO)
    assert Components(recipe).sampler(str(tiny_policy_dir), 8, "sft").model.dtype == expected
    assert load_policy(tiny_policy_dir, dtype=recipe.eval.lm_eval.dtype)[0].dtype == expected
    assert getattr(torch, training_precision(recipe.train, "cpu")) == expected
    with training_autocast(torch.device("cpu"), recipe.train):
        assert torch.is_autocast_enabled("cpu") == (expected == torch.bfloat16)
    fp32 = load_recipe(None, ["sampling.dtype=float32", "train.precision=fp32"])  # explicit: fp32 on any machine
    assert Components(fp32).sampler(str(tiny_policy_dir), 8, "sft").model.dtype == torch.float32
    with training_autocast(torch.device("cpu"), fp32.train):
        assert not torch.is_autocast_enabled("cpu")


def test_the_chosen_precisions_are_mlflow_params_of_the_experiment(mlflow_home):
    from selm.pipeline.policy import precision_line, resolved_precisions

    chosen = resolve("auto", "cpu")
    recipe = load_recipe(None, AUTO)
    run = tracking.start_run(recipe, "exp", key="E", params=resolved_precisions(recipe))
    params = tracking.client().get_run(run).data.params
    assert params["sampling.dtype"] == "auto"  # what the recipe asked for, beside what it got here
    assert params["resolved.sampling.dtype"] == params["resolved.eval.lm_eval.dtype"] == chosen
    assert params["resolved.train.precision"] == resolve("auto", "cuda" if torch.cuda.is_available() else "cpu")
    assert params["resolved.hardware"] == detect("cpu").describe()
    assert f"sampling {chosen}" in precision_line(params)
    # the default tiny recipe stays fp32 on every machine: its seeded numbers do not depend on the CPU's bf16
    tiny = resolved_precisions(load_recipe(None))
    assert {tiny[f"resolved.{k}"] for k in ("sampling.dtype", "train.precision", "eval.lm_eval.dtype")} == {"float32"}


def test_checkpointing_and_the_chunked_head_are_on_for_a_gpu_off_for_a_cpu_and_recorded():
    """``train.gradient_checkpointing`` and ``train.chunked_head`` "auto": the memory savings where training runs on a
    GPU; an explicit choice on any device; what this machine chose is a run param and in the precision line."""
    from selm.pipeline.policy import precision_line, resolved_precisions

    auto = load_recipe(None).train
    assert auto.gradient_checkpointing == auto.chunked_head == "auto"
    for device, on in (("cuda", True), ("cuda:1", True), ("cpu", False)):
        assert auto.checkpointing(device) is on and auto.head_in_chunks(device) is on
    for asked in (True, False):
        value = str(asked).lower()
        train = load_recipe(None, [f"train.gradient_checkpointing={value}", f"train.chunked_head={value}"]).train
        for device in ("cpu", "cuda"):
            assert train.checkpointing(device) is asked and train.head_in_chunks(device) is asked
    chosen = resolved_precisions(load_recipe(None))
    on_gpu = str(torch.cuda.is_available()).lower()
    assert chosen["resolved.train.gradient_checkpointing"] == chosen["resolved.train.chunked_head"] == on_gpu
    word = "on" if on_gpu == "true" else "off"
    assert f"(gradient checkpointing {word}, chunked LM head {word})" in precision_line(chosen)
