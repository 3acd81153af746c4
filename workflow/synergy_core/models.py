"""Model and tokenizer loading: hub models (offline by default), random-init twins, built-in tiny models.

A *model spec* is one entry of the config's ``models`` mapping (see
``workflow/schemas/config.schema.yaml``)::

    {"hf_id": "EleutherAI/pythia-1b", "revision": "step143000", "init": "pretrained",
     "seed": 0, "dtype": "float32", "local_path": None}

``hf_id`` may also name a built-in offline model, ``builtin:tiny-gpt-neox`` (and, for tests and
the multi-family demo, ``builtin:tiny-llama``, ``builtin:tiny-qwen3``, ``builtin:tiny-gemma3``,
``builtin:tiny-gpt2``). Built-in models use a byte-level tokenizer built locally, so nothing is
ever downloaded for them. Their weights are drawn from ``seed``; a revision ``step{N}`` then
trains them for N deterministic steps on a small generated corpus (:func:`tiny_corpus`), which
stands in for Pythia's training checkpoints in the offline demo (``step0`` = initialisation).
``builtin:tiny-llama-arith`` is tiny-llama trained on the built-in arithmetic task instead
(:func:`training_text`), the model of the perturbation stage's demo.

Every loader here runs with the hub offline unless ``allow_download=True`` (only the
``download_models`` rule passes that), so a compute node without internet fails within seconds
with a message naming the model and the fix, instead of hanging on a network request.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shlex
from dataclasses import dataclass

import numpy as np
import torch

from .builtin import BUILTIN_MODELS, BUILTIN_PREFIX, TINY_CONFIGS, TINY_CORPUS, arithmetic_corpus, is_builtin

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>")


class ModelUnavailableError(RuntimeError):
    """A configured model is not in the local cache and may not be downloaded here."""


@dataclass(frozen=True)
class ModelShape:
    """Attention geometry read from a loaded model's config (never hard-coded)."""

    n_layers: int
    n_heads: int
    head_dim: int

    @property
    def n_total_heads(self) -> int:
        return self.n_layers * self.n_heads


@contextlib.contextmanager
def hub_mode(offline: bool):
    """Temporarily force the Hugging Face hub offline (or allow it) through its environment flags."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ[k] = "1" if offline else "0"
    try:
        import huggingface_hub.constants as hc

        saved_const = hc.HF_HUB_OFFLINE
        hc.HF_HUB_OFFLINE = offline
    except (ImportError, AttributeError):  # pragma: no cover - very old huggingface_hub
        hc, saved_const = None, None
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if hc is not None:
            hc.HF_HUB_OFFLINE = saved_const


def build_byte_tokenizer():
    """A byte-level tokenizer built locally: 256 byte tokens plus ``<|endoftext|>`` and ``<|pad|>``.

    It needs no training data and no download, round-trips any UTF-8 text exactly, and is
    deterministic, which is all the offline tiny models need.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=SPECIAL_TOKENS[0],
        bos_token=SPECIAL_TOKENS[0],
        pad_token=SPECIAL_TOKENS[1],
        padding_side="left",
    )


def builtin_config(name: str, vocab_size: int):
    """The transformers config of a built-in tiny model."""
    from transformers import AutoConfig

    key = name[len(BUILTIN_PREFIX):] if is_builtin(name) else name
    if key not in TINY_CONFIGS:
        raise ValueError(f"unknown built-in model {name!r}; choose one of {', '.join(BUILTIN_MODELS)}")
    model_type, kwargs = TINY_CONFIGS[key]
    extra = dict(vocab_size=vocab_size, bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 2,
                 pad_token_id=vocab_size - 1)
    if model_type == "gpt2":
        extra["n_positions"] = 1024
    else:
        extra["max_position_embeddings"] = 1024
    return AutoConfig.for_model(model_type, **kwargs, **extra)


def _source(spec: dict) -> tuple[str, dict]:
    """Where a hub model is read from: its local path, or its id plus revision (the cache is
    ``$HF_HOME/hub``; the workflow exports ``HF_HOME`` from the config's ``hf_home``)."""
    # never run code shipped with a model (and never ask on a terminal whether to)
    kw = {"trust_remote_code": False}
    if spec.get("local_path"):
        return spec["local_path"], kw
    if spec.get("revision"):
        kw["revision"] = spec["revision"]
    return spec["hf_id"], kw


def _describe(spec: dict) -> str:
    rev = f" (revision {spec['revision']})" if spec.get("revision") else ""
    return f"{spec.get('local_path') or spec['hf_id']}{rev}"


def download_commands(spec: dict) -> list[str]:
    """Shell commands that put a hub model into the cache, every value quoted with
    :func:`shlex.quote` (an id or revision holding ``;`` or spaces stays one argument when
    pasted): the workflow's ``download_models`` rule first (it reads every model of the config),
    then the ``hf download`` CLI of huggingface_hub for this model alone, prefixed with the
    ``HF_HOME`` of this process when it is set (the workflow exports the config's ``hf_home``)."""
    hf = ["hf", "download", spec["hf_id"]]
    if spec.get("revision"):
        hf += ["--revision", str(spec["revision"])]
    env = f"HF_HOME={shlex.quote(os.environ['HF_HOME'])} " if os.environ.get("HF_HOME") else ""
    return ["snakemake download_models --cores 1", env + shlex.join(hf)]


def _summary(err: Exception) -> str:
    """One line naming an exception: its type and the first non-empty line of its message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else '(no message)'}"


def _unavailable(spec: dict, err: Exception) -> ModelUnavailableError:
    """The error of a model that cannot be loaded here: a short first line naming the model, then
    the fix (quoted commands, one per line), then the original error's one-line summary. Raise
    it ``from None``: the chained hub/transformers traceback only buries the message."""
    if isinstance(err, pickle.UnpicklingError):
        head = ("its weights are a pickle holding more than tensors, which is refused (torch.load "
                "with weights_only); use a safetensors checkpoint")
        fix = []
    elif isinstance(err, ValueError) and "trust_remote_code" in str(err):
        head = "it needs its own code (trust_remote_code), which this workflow never runs"
        fix = []
    elif spec.get("local_path"):
        head = (f"local_path {spec['local_path']!r} is not a loadable Hugging Face causal LM "
                "directory (it needs config.json, weights and tokenizer files)")
        fix = []
    else:
        head = "it is not in the local cache and this step never downloads"
        snake, hf = download_commands(spec)
        fix = ["  pre-download it where the network is (e.g. the login node), with the same "
               "HF_HOME and the --configfile options of this run:", f"    {snake}",
               "  or this model alone:", f"    {hf}"]
    lines = [f"model {_describe(spec)}: {head}", *fix, f"  cause: {_summary(err)}"]
    return ModelUnavailableError("\n".join(lines))


def load_tokenizer(spec: dict, allow_download: bool = False):
    """The tokenizer of a model spec, left-padding, with a pad token (EOS if it has none)."""
    if is_builtin(spec["hf_id"]):
        return build_byte_tokenizer()
    from transformers import AutoTokenizer

    src, kw = _source(spec)
    try:
        with hub_mode(offline=not allow_download):
            tok = AutoTokenizer.from_pretrained(src, **kw)
    except (OSError, ValueError) as err:
        raise _unavailable(spec, err) from None
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(spec: dict, allow_download: bool = False, device: str | torch.device = "cpu",
               gpus: int = 1):
    """Load the model of a spec in eval mode.

    ``init: random`` keeps the architecture (the config of ``hf_id``/``revision``) and draws fresh
    weights with ``torch.manual_seed(seed)``: the paper's randomly initialised baseline.

    ``gpus`` (``generation.gpus``): 1 puts the whole model on ``device``; more spread it over the
    first ``gpus`` visible CUDA GPUs (:func:`dispatch` with ``"auto"``), for a model larger than
    one GPU. The weights are built on the CPU in float32 and cast there either way, so the
    numbers do not depend on the placement.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = DTYPES[spec.get("dtype", "float32")]
    seed = int(spec.get("seed", 0))
    if is_builtin(spec["hf_id"]):
        tokenizer = build_byte_tokenizer()
        config = builtin_config(spec["hf_id"], len(tokenizer))
        model = _from_config(config, seed)
        steps = builtin_steps(spec.get("revision"))
        if spec.get("init", "pretrained") == "pretrained" and steps:
            _trained_builtin(model, tokenizer, spec["hf_id"], steps, seed)
    else:
        src, kw = _source(spec)
        try:
            with hub_mode(offline=not allow_download):
                if spec.get("init", "pretrained") == "random":
                    config = AutoConfig.from_pretrained(src, **kw)
                    model = _from_config(config, seed)
                else:
                    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, **kw)
        except (OSError, ValueError, pickle.UnpicklingError) as err:
            raise _unavailable(spec, err) from None
    if gpus > 1:
        _check_gpus(device, gpus)
        model = dispatch(model.to(dtype=dtype), "auto", device, gpus)
    else:
        model = model.to(device=device, dtype=dtype)
    model.eval()
    return model


def _check_gpus(device, gpus: int) -> None:
    """A job asked to spread a model over ``gpus`` GPUs runs on CUDA and sees that many."""
    if not str(device).startswith("cuda"):
        raise RuntimeError(f"generation.gpus is {gpus}, but this job runs on {str(device)!r}; "
                           "spreading a model over GPUs needs a GPU node (generation.device auto "
                           "or cuda)")
    visible = torch.cuda.device_count()
    if visible < gpus:
        raise RuntimeError(f"generation.gpus is {gpus}, but this job sees {visible} GPU(s); the "
                           f"cluster profile must ask for {gpus} (gres=gpu:{gpus}: "
                           "synergy_core.compute.gpus_needed)")


def placement(model) -> list[str]:
    """The devices a loaded model's parameters are on, e.g. ``["cuda:0", "cuda:1"]`` (provenance)."""
    return sorted({str(p.device) for p in model.parameters()})


def dispatch(model, device_map: str | dict, device: str | torch.device = "cpu",
             gpus: int | None = None, force_hooks: bool = False):
    """Place a loaded model's modules with accelerate (:func:`accelerate.dispatch_model`).

    ``"auto"`` on a CUDA ``device``: whole decoder layers (the model's ``_no_split_modules``)
    balanced over the first ``gpus`` visible GPUs (all by default), refusing to offload anything
    to the CPU or disk (a loud error instead of a silent 100x slow-down); on a CPU ``device``:
    everything on the CPU. A dict is an accelerate device map (module name -> device). Across
    devices (or with ``force_hooks``, which the CPU tests use) accelerate's hooks move each
    module's inputs to its device and the model's outputs back to the inputs' device;
    :class:`hooks.HeadHooks` moves its masks and norms itself.
    """
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    if device_map == "auto":
        if not str(device).startswith("cuda"):
            device_map = {"": str(device)}
        else:
            n = gpus or torch.cuda.device_count()
            no_split = list(getattr(model, "_no_split_modules", None) or [])
            free = {i: torch.cuda.mem_get_info(i)[0] for i in range(n)}
            budget = get_balanced_memory(model, max_memory=free, no_split_module_classes=no_split,
                                         dtype=model.dtype)
            device_map = infer_auto_device_map(model, max_memory=budget, no_split_module_classes=no_split,
                                               dtype=model.dtype)
            off = sorted({str(d) for d in device_map.values() if not isinstance(d, int)})
            if off:
                size = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
                raise RuntimeError(f"the model ({size:.2f} GiB in {model.dtype}) does not fit on "
                                   f"{n} GPU(s) (it would be offloaded to {', '.join(off)}); raise "
                                   "generation.gpus or choose a smaller dtype")
    elif not isinstance(device_map, dict):
        raise ValueError(f"device_map must be None, 'auto' or a dict, not {device_map!r}")
    return dispatch_model(model, device_map=device_map, force_hooks=force_hooks)


@contextlib.contextmanager
def tf32_mode(enabled: bool):
    """Set TF32 for CUDA float32 matmuls and cuDNN convolutions (``generation.tf32``) for the
    duration, then restore. ``False`` turns both off (cuDNN's default is on): float32 is then the
    IEEE reference. No effect on the CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


#: Directory of the trained built-in models' weights (default ~/.cache/synergy-core/builtin;
#: "off" disables the cache).
BUILTIN_CACHE_ENV = "SYNERGY_CORE_BUILTIN_CACHE"


def builtin_cache_path(hf_id: str, steps: int, seed: int):
    """Where the weights of a trained built-in model are cached, or None when the cache is off.
    The name holds a digest of this module's and :mod:`.builtin`'s source and the torch and
    transformers versions, so a change to the training or the architecture never reads old
    weights."""
    import hashlib
    from pathlib import Path

    import transformers

    root = os.environ.get(BUILTIN_CACHE_ENV) or str(Path.home() / ".cache" / "synergy-core" / "builtin")
    if root == "off":
        return None
    here = Path(__file__).parent
    blob = (here / "models.py").read_bytes() + (here / "builtin.py").read_bytes()
    blob += f"{hf_id}|{steps}|{seed}|{torch.__version__}|{transformers.__version__}".encode()
    name = hf_id[len(BUILTIN_PREFIX):]
    return Path(root) / f"{name}-step{steps}-seed{seed}-{hashlib.sha256(blob).hexdigest()[:20]}.pt"


def _trained_builtin(model, tokenizer, hf_id: str, steps: int, seed: int) -> None:
    """Train a built-in model (:func:`train_tiny`, bitwise reproducible on one thread), or load
    the weights an earlier job trained from the cache (:func:`builtin_cache_path`): the demo's
    jobs would otherwise each spend seconds retraining the same model. A cache file that does
    not load into the model (damaged, foreign) is logged, ignored and replaced."""
    import logging

    path = builtin_cache_path(hf_id, steps, seed)
    if path is not None and path.is_file():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
            return
        except Exception as err:  # noqa: BLE001 - any failure: retrain and replace it
            logging.getLogger(__name__).warning("ignoring the cached built-in model %s (%s); retraining",
                                                path, err)
    train_tiny(model, tokenizer, steps, seed, training_text(hf_id, seed))
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, tmp)
        os.replace(tmp, path)                       # atomic: a reader sees the whole file or none
    except OSError as err:                          # a read-only home: train every time
        logging.getLogger(__name__).warning("cannot cache the built-in model at %s (%s)", path, err)


def builtin_steps(revision: str | None) -> int:
    """Training steps of a built-in model's revision: ``None`` or ``step0`` -> 0, ``stepN`` -> N."""
    if not revision:
        return 0
    if not re.fullmatch(r"step\d+", revision):
        raise ValueError(f"built-in model revisions are step0, step1, ...; got {revision!r}")
    return int(revision[4:])


def tiny_corpus(n_sentences: int = 4000, seed: int = 0) -> str:
    """A deterministic toy corpus with learnable structure: agreement, arithmetic, common sense."""
    rng = np.random.default_rng(seed)
    names = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana"]
    things = ["cat", "book", "apple", "car", "friend", "letter", "river", "garden"]
    verbs = [("go", "goes"), ("eat", "eats"), ("have", "has"), ("see", "sees"), ("like", "likes")]
    feel = [("lost a game", "sad"), ("got a gift", "happy"), ("heard a noise", "scared"),
            ("passed the test", "proud"), ("was left out", "lonely")]
    out = []
    for _ in range(n_sentences):
        kind = rng.integers(4)
        if kind == 0:
            base, third = verbs[rng.integers(len(verbs))]
            who = names[rng.integers(len(names))]
            out.append(f"{who} {third} the {things[rng.integers(len(things))]}. "
                       f"They {base} it every day.")
        elif kind == 1:
            a, b = rng.integers(0, 10, size=2)
            out.append(f"What is {a} + {b}? {a} + {b} = {a + b}.")
        elif kind == 2:
            event, mood = feel[rng.integers(len(feel))]
            out.append(f"{names[rng.integers(len(names))]} {event}, so they feel {mood}.")
        else:
            a = things[rng.integers(len(things))]
            out.append(f"Noun: {a}. Verb: {verbs[rng.integers(len(verbs))][1]}.")
    return " ".join(out)


def training_text(hf_id: str, seed: int) -> str:
    """The training text of a built-in model: :func:`tiny_corpus`, or for ``tiny-llama-arith``
    the arithmetic task's examples (:func:`builtin.arithmetic_corpus`)."""
    if TINY_CORPUS.get(hf_id[len(BUILTIN_PREFIX):], "text") == "arithmetic":
        return arithmetic_corpus(seed=seed)
    return tiny_corpus(seed=seed)


def train_tiny(model, tokenizer, steps: int, seed: int, text: str | None = None, batch: int = 8,
               length: int = 48, lr: float = 3e-3) -> None:
    """Train a built-in model in place for ``steps`` AdamW steps on ``text`` (default
    :func:`tiny_corpus`).

    Runs on one CPU thread with a fixed seed, so the weights are bitwise reproducible whatever
    the job's thread count (a few seconds for a few hundred steps).
    """
    text = tiny_corpus(seed=seed) if text is None else text
    ids = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        model.train()
        for _ in range(steps):
            starts = torch.randint(0, len(ids) - length - 1, (batch,), generator=gen)
            x = torch.stack([ids[s:s + length] for s in starts])
            loss = model(input_ids=x, labels=x).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
    finally:
        torch.set_num_threads(threads)


def _from_config(config, seed: int):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def download(spec: dict) -> None:
    """Fetch a hub model into the cache (network needed), then prove the cached copy loads
    offline. A random-init entry needs only the config and tokenizer, not the weights."""
    if is_builtin(spec["hf_id"]) or spec.get("local_path"):
        return
    from huggingface_hub import snapshot_download
    from transformers import AutoConfig

    src, kw = _source(spec)
    patterns = None
    if spec.get("init") == "random":
        patterns = ["*.json", "*.txt", "*.model", "tokenizer*"]
    with hub_mode(offline=False):
        snapshot_download(repo_id=src, allow_patterns=patterns, **kw)
    with hub_mode(offline=True):
        AutoConfig.from_pretrained(src, **kw)
    load_tokenizer(spec)
