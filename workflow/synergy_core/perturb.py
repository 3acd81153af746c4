"""Weight perturbation of chosen attention heads (the paper's Fig 4b) and greedy answering.

**Where the noise goes.** The paper adds Gaussian noise to "the query-projection rows and
output-projection columns associated with each head". For head ``h`` of a layer with head width
``d`` (TransformerLens's ``W_Q[h]`` and ``W_O[h]``):

* Llama / Qwen / Gemma (``self_attn.q_proj``, ``self_attn.o_proj``, weights ``[out, in]``):
  rows ``h*d:(h+1)*d`` of ``q_proj.weight`` and columns ``h*d:(h+1)*d`` of ``o_proj.weight``;
* GPT-NeoX (fused ``attention.query_key_value``, rows grouped per head as ``[q, k, v]``): rows
  ``3*h*d : 3*h*d + d`` of the fused weight, and columns ``h*d:(h+1)*d`` of ``attention.dense``;
* GPT-2 (``Conv1D``, weights ``[in, out]``): columns ``h*d:(h+1)*d`` of ``attn.c_attn.weight``
  (its first third is the query) and rows ``h*d:(h+1)*d`` of ``attn.c_proj.weight``.

With grouped-query attention the key and value heads are shared by several query heads and are
**not** perturbed (they belong to no single head); only the query head's rows and its output
columns are. Biases and query/key norms are untouched. The noise is ``N(0, (alpha *
std(W))^2)`` with ``std(W)`` the standard deviation of the whole weight matrix (of the query
block for a fused matrix), taken from the unperturbed weights; it is drawn on the CPU in float32
from a generator seeded by (seed, condition, set, alpha, repeat), so it is the same on any
device, then added in float32 and cast to the weight's dtype. Every other parameter stays
bitwise equal, and :meth:`HeadPerturbation.restore` puts the saved slices back bitwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .extract import eos_ids
from .hooks import output_projections
from .models import ModelShape


@dataclass(frozen=True)
class WeightSlice:
    """One head's slice of a weight: ``param.data[index]``, with ``std`` the matrix's std."""

    name: str
    param: torch.nn.Parameter
    index: tuple
    std: float


def _query_weight(model, layer_name: str):
    """The query weight of a decoder layer and its layout ("separate", "neox", "conv1d")."""
    modules = dict(model.named_modules())
    attn = modules[layer_name]
    for child, layout in (("q_proj", "separate"), ("query_key_value", "neox"), ("c_attn", "conv1d")):
        if hasattr(attn, child):
            return f"{layer_name}.{child}.weight", getattr(attn, child).weight, layout
    raise RuntimeError(f"no query projection found in {layer_name} ({type(attn).__name__}); "
                       "supported: q_proj, query_key_value (GPT-NeoX), c_attn (GPT-2)")


def _check_widths(model_name: str, layer: int, q_weight, layout: str, proj, n_heads: int, d: int) -> None:
    """Refuse a model whose query or output projection is not ``n_heads`` blocks of width ``d``
    (e.g. DeepSeek-V2's latent attention, where a query head is wider than its value head):
    the slices would silently land on other heads' weights."""
    q_width = {"separate": q_weight.shape[0], "neox": q_weight.shape[0] // 3,
               "conv1d": q_weight.shape[1] // 3}[layout]
    o_width = proj.weight.shape[0] if layout == "conv1d" else proj.weight.shape[1]
    if q_width != n_heads * d or o_width != n_heads * d or (layout == "neox" and q_weight.shape[0] % 3):
        raise RuntimeError(f"{model_name} layer {layer}: the query projection is {q_width} wide and the "
                           f"output projection takes {o_width}, not {n_heads} heads x {d}; the "
                           "perturbation stage supports attention whose query heads are as wide as their "
                           "outputs (GPT-NeoX, GPT-2, Llama, Qwen, Gemma), not e.g. latent attention")


def head_weight_slices(model, shape: ModelShape) -> dict[tuple[int, int], list[WeightSlice]]:
    """Every head's query and output slices, ``{(layer, head): [query slice, output slice]}``."""
    d, n_heads = shape.head_dim, shape.n_heads
    names = {id(m): n for n, m in model.named_modules()}
    slices = {}
    for layer, proj in enumerate(output_projections(model)):
        proj_name = names[id(proj)]
        attn_name = proj_name.rsplit(".", 1)[0]
        q_name, q_weight, layout = _query_weight(model, attn_name)
        _check_widths(type(model).__name__, layer, q_weight, layout, proj, n_heads, d)
        with torch.no_grad():
            if layout == "separate":
                q_std = q_weight.float().std().item()
            elif layout == "neox":
                q_std = q_weight.view(n_heads, 3, d, -1)[:, 0].float().std().item()
            else:
                q_std = q_weight[:, :n_heads * d].float().std().item()
            o_std = proj.weight.float().std().item()
        for h in range(n_heads):
            rows = slice(h * d, (h + 1) * d)
            if layout == "separate":
                q_index = (rows, slice(None))
            elif layout == "neox":
                q_index = (slice(3 * h * d, 3 * h * d + d), slice(None))
            else:
                q_index = (slice(None), rows)
            o_index = (rows, slice(None)) if layout == "conv1d" else (slice(None), rows)
            slices[(layer, h)] = [WeightSlice(q_name, q_weight, q_index, q_std),
                                  WeightSlice(f"{proj_name}.weight", proj.weight, o_index, o_std)]
    return slices


class HeadPerturbation:
    """Add noise to the slices of some heads; :meth:`restore` puts the originals back bitwise."""

    def __init__(self, slices: dict[tuple[int, int], list[WeightSlice]]):
        self.slices = slices
        self._saved: list[tuple[WeightSlice, torch.Tensor]] = []

    @torch.no_grad()
    def apply(self, heads, alpha: float, seed: int) -> None:
        """Perturb ``heads`` (``(layer, head)`` pairs, in the given order) with scale ``alpha``."""
        if self._saved:
            raise RuntimeError("restore() the previous perturbation first")
        gen = torch.Generator().manual_seed(seed)
        for head in heads:
            for s in self.slices[tuple(int(x) for x in head)]:
                target = s.param.data[s.index]
                self._saved.append((s, target.clone()))
                noise = torch.randn(target.shape, generator=gen, dtype=torch.float32) * (alpha * s.std)
                s.param.data[s.index] = (target.float() + noise.to(target.device)).to(target.dtype)

    @torch.no_grad()
    def restore(self) -> None:
        for s, original in reversed(self._saved):
            s.param.data[s.index] = original
        self._saved = []


def heads_of(flat, n_heads: int) -> list[tuple[int, int]]:
    """Flat head indices as ``(layer, head)`` pairs."""
    return [(int(i) // n_heads, int(i) % n_heads) for i in flat]


#: End-of-turn tokens of common chat templates: a template's answer ends with one of them, which
#: the tokenizer's end-of-sequence token need not be (Qwen's <|im_end|> vs <|endoftext|>).
TURN_END_TOKENS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|eom_id|>", "<|end|>")


def uses_chat_template(tokenizer, chat_template) -> bool:
    """Whether prompts are wrapped in the chat template: "auto" when the tokenizer has one,
    True (refused when it has none), False never."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat_template is True and not has_template:
        raise ValueError("perturbation.chat_template is true, but the tokenizer has no chat template")
    return chat_template is True or (chat_template == "auto" and has_template)


def build_prompts(tokenizer, texts: list[str], chat_template) -> tuple[list[list[int]], list[int]]:
    """Token ids of each prompt and the extra stop tokens: with a chat template
    (:func:`uses_chat_template`) each text is a user turn with the generation prompt added, and
    the template's end-of-turn tokens (:data:`TURN_END_TOKENS` in the vocabulary) also stop."""
    if not uses_chat_template(tokenizer, chat_template):
        return [tokenizer(t)["input_ids"] for t in texts], []
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                           add_generation_prompt=True) for t in texts]
    vocab = tokenizer.get_vocab()
    stops = sorted({vocab[t] for t in TURN_END_TOKENS if t in vocab})
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], stops


@torch.no_grad()
def greedy_answers(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int,
                   device, stop_ids=()) -> tuple[list[str], list[int]]:
    """Greedy completions of tokenised prompts, batched with left padding (prompts sorted by
    length, longest first, so a batch wastes little padding and one that does not fit in memory
    fails at once; the order does not depend on the weights, so every condition sees the same
    batches). Generation stops at the model's end-of-sequence tokens and ``stop_ids``. Returns
    each prompt's decoded completion (special tokens dropped) and its number of generated tokens
    (up to and including the stop token)."""
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), i))
    texts, counts = [""] * len(prompts), [0] * len(prompts)
    eos = set(eos_ids(model, tokenizer)) | set(stop_ids)   # tokenizer's, generation config's, template's
    pad = tokenizer.pad_token_id
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]):] = 1
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                             max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                             eos_token_id=sorted(eos), temperature=None, top_p=None, top_k=None)
        for row, i in enumerate(batch):
            new = out[row, width:].tolist()
            n = next((j + 1 for j, t in enumerate(new) if t in eos), len(new))
            counts[i] = n
            texts[i] = tokenizer.decode(new[:n], skip_special_tokens=True)
    return texts, counts
