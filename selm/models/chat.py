"""How text becomes token ids: the tokenizer's own chat template for prompts, the end-of-turn token after replies."""

from __future__ import annotations


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Ids of a one-turn user message followed by the assistant header (``add_generation_prompt``)."""
    return list(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
    )


def encode_response(tokenizer, text: str) -> list[int]:
    """Ids of an assistant reply, closed by the end-of-turn (eos) token as the model must learn to emit it."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def conversation_text(tokenizer, prompt: str, reply: str) -> str:
    """The (user prompt, assistant reply) exchange rendered by the chat template, as a reward model reads it."""
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
    return tokenizer.apply_chat_template(messages, tokenize=False)
