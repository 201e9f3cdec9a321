"""EchoCLIP loading by one spec string, and batched, L2-normalised frame/text encoding.

Specs:
  hf-hub:ORG/REPO   the published weights (default: hf-hub:mkaichristensen/echo-clip), downloaded once
  local-dir:PATH    the same files (open_clip_config.json + weights) in a folder, fully offline
  random:echoclip   EchoCLIP's exact architecture, seeded random weights (benchmarks; logged loudly)
  random:tiny       a small seeded config shipped in model_configs/ (fast tests)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from echosearch.server.errors import ModelLoadError
from echosearch.server.model_options import DEFAULT_SPEC, PRECISION_NAMES, ModelOptions

log = logging.getLogger(__name__)

SPEC_PREFIXES = ("hf-hub:", "local-dir:", "random:")
CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
RANDOM_CONFIGS = {"echoclip": "echosearch_echoclip", "tiny": "echosearch_tiny"}
RANDOM_SEED = 0
PRECISIONS = dict(zip(PRECISION_NAMES, (torch.float32, torch.bfloat16, torch.float16), strict=True))
CPU_CALL_FRAMES = 16  # rows of every CPU forward pass (zero-padded); on ConvNeXt-B 16 ran about as fast per frame as 32, 8 about 20 % slower
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
CONFIG_FILE = "open_clip_config.json"
PROBE_TIMEOUT_S = 5.0
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
TRY_WITHOUT_DOWNLOAD = (
    "To try the service without the download: --model random:echoclip "
    "(EchoCLIP's architecture with random weights; `make serve MODEL=random:echoclip`)"
)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: its scheme (hf-hub, local-dir, random) and what follows the colon."""

    scheme: str
    target: str

    @classmethod
    def parse(cls, spec: str) -> ModelSpec:
        """The one spec parser; ModelLoadError naming the valid forms when `spec` is none of them."""
        scheme, sep, target = spec.partition(":")
        if not sep or f"{scheme}:" not in SPEC_PREFIXES:
            raise ModelLoadError(
                f"unknown model spec {spec!r}; valid prefixes: {', '.join(SPEC_PREFIXES)} "
                f"(e.g. {DEFAULT_SPEC}, local-dir:/path/to/echo-clip, random:echoclip, random:tiny)"
            )
        return cls(scheme, target)


@dataclass(frozen=True)
class _Loaded:
    """What a loader hands back: the network, its open_clip name (for the tokenizer), config and weights digest."""

    clip: torch.nn.Module
    open_clip_name: str
    model_cfg: dict[str, Any]
    weights_digest: str


class EchoClipModel:
    """A loaded EchoCLIP-style open_clip model with its tokenizer, identity and encode helpers."""

    def __init__(
        self,
        clip: torch.nn.Module,
        tokenizer: Any,
        *,
        spec: str,
        weights_digest: str,
        model_cfg: dict[str, Any],
        device: torch.device,
        precision: str,
        batch_size: int,
    ) -> None:
        self.clip = clip.eval()
        self.tokenizer = tokenizer
        self.spec = spec
        self.identity = f"{spec}@sha256:{weights_digest[:16]}"
        self.model_cfg = model_cfg
        self.embed_dim = int(model_cfg["embed_dim"])
        self.context_length = int(model_cfg["text_cfg"].get("context_length", 77))
        # Image size, mean and std travel with the model (open_clip's preprocess config), so a
        # checkpoint trained with other statistics is preprocessed the way it was trained.
        import open_clip

        preprocess = open_clip.get_model_preprocess_cfg(clip)
        size = preprocess.get("size", model_cfg["vision_cfg"].get("image_size", 224))
        self.image_size = int(size if isinstance(size, int) else size[0])
        self.mean: tuple[float, float, float] = tuple(float(x) for x in preprocess["mean"])  # type: ignore[assignment]
        self.std: tuple[float, float, float] = tuple(float(x) for x in preprocess["std"])  # type: ignore[assignment]
        self.preprocess_cfg = dict(preprocess)
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self._dtype = PRECISIONS[precision]
        # CPU: one fixed forward shape, so embeddings do not depend on batching (see image_features).
        self.call_frames = CPU_CALL_FRAMES if device.type == "cpu" else 0
        self.image_encoder: Any = self.clip.encode_image  # torch.compile may replace it (compile_image_encoder)

    def compile_image_encoder(self) -> None:
        """torch.compile the image tower (first batches of each new shape compile: slow once, faster after)."""
        self.image_encoder = torch.compile(self.clip.encode_image, dynamic=False)
        if self.device.type == "cuda":
            self.call_frames = -1  # pad each batch to a power of two: a handful of shapes to compile

    def __repr__(self) -> str:
        return f"EchoClipModel({self.identity!r}, device={self.device}, precision={self.precision})"

    def encode_frames(self, pixels: torch.Tensor) -> np.ndarray:
        """(N,3,H,W) pixels (uint8 crops, or CLIP-normalised float) -> (N,D) float32 L2-normalised embeddings."""
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"expected pixels of shape (N,3,H,W), got {tuple(pixels.shape)}")
        out = np.empty((pixels.shape[0], self.embed_dim), dtype=np.float32)
        for start in range(0, pixels.shape[0], self.batch_size):
            batch = pixels[start : start + self.batch_size].to(self.device, non_blocking=True)
            out[start : start + len(batch)] = self.image_features(batch).cpu().numpy()
        return out

    def image_features(self, batch: torch.Tensor) -> torch.Tensor:
        """(n,3,S,S) pixels already on the model's device -> (n,D) float32 L2-normalised, still on the device.

        uint8 crops are CLIP-normalised here (on the GPU when there is one). On a CPU every forward
        pass has exactly `call_frames` rows (the tail is zero-padded): MKL/oneDNN pick kernels by
        batch size, so a frame's embedding would otherwise depend on how many frames shared its
        batch; with one fixed shape it is bit-identical however requests are batched together.
        """
        if batch.shape[0] == 0:
            return torch.empty((0, self.embed_dim), dtype=torch.float32, device=batch.device)
        with torch.inference_mode():
            if batch.dtype == torch.uint8:
                mean = torch.tensor(self.mean, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
                std = torch.tensor(self.std, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
                batch = batch.float().div_(255.0).sub_(mean).div_(std)  # the same ops as media.video.normalise
            n = batch.shape[0]
            step = self.call_frames if self.call_frames > 0 else n
            if self.call_frames < 0:
                step = 1 << max(0, n - 1).bit_length()
            parts = []
            for start in range(0, n, step):
                part = batch[start : start + step]
                if self.call_frames and len(part) < step:  # zero rows: they change no other row's result
                    part = torch.cat([part, part.new_zeros((step - len(part), *part.shape[1:]))])
                parts.append(self._forward_image(part)[: min(step, n - start)])
            return F.normalize(torch.cat(parts) if len(parts) > 1 else parts[0], dim=-1)

    def _forward_image(self, batch: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            batch = batch.to(memory_format=torch.channels_last)
        if self._dtype == torch.float32:
            return self.image_encoder(batch).float()
        with torch.autocast(self.device.type, dtype=self._dtype):
            return self.image_encoder(batch.to(self._dtype)).float()

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (T,D) float32 L2-normalised embeddings (longer texts are truncated by the tokenizer)."""
        texts = list(texts)
        out = np.empty((len(texts), self.embed_dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer(texts[start : start + self.batch_size]).to(self.device)
                feats = self.clip.encode_text(tokens).float()
                out[start : start + len(tokens)] = F.normalize(feats, dim=-1).cpu().numpy()
        return out

    def count_tokens(self, text: str) -> int:
        """BPE tokens of `text` including start and end tokens (compare with context_length)."""
        return len(self.tokenizer.encode(text)) + 2

    def save_dir(self, path: str | Path) -> Path:
        """Write open_clip_config.json + open_clip_pytorch_model.bin so `local-dir:PATH` reloads this model."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        preprocess = {k: list(v) if isinstance(v, tuple) else v for k, v in self.preprocess_cfg.items()}
        config = {"model_cfg": self.model_cfg, "preprocess_cfg": preprocess}
        (path / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        state = {k: v.detach().float().cpu() for k, v in self.clip.state_dict().items()}
        torch.save(state, path / "open_clip_pytorch_model.bin")
        return path


def load_model(
    spec: str = DEFAULT_SPEC,
    *,
    device: str = ModelOptions.device,
    precision: str = ModelOptions.precision,
    batch_size: int = 32,
) -> EchoClipModel:
    """Load a model by spec (hf-hub:/local-dir:/random:) on device auto|cpu|cuda at precision fp32|bf16|fp16."""
    dev = _resolve_device(device)
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if batch_size < 1:
        raise ModelLoadError(f"batch_size must be >= 1, got {batch_size}")
    parsed = ModelSpec.parse(spec)
    if parsed.scheme == "random":
        loaded = _load_random(parsed.target)
    else:
        folder = _download_hub(parsed.target) if parsed.scheme == "hf-hub" else Path(parsed.target).expanduser()
        loaded = _load_dir(folder, spec)
    import open_clip

    clip = loaded.clip.to(dev)
    if precision != "fp32":
        clip = clip.to(PRECISIONS[precision])  # weights cast once; autocast keeps norms/softmax in fp32
    if dev.type == "cuda":
        clip.visual = clip.visual.to(memory_format=torch.channels_last)
    tokenizer = open_clip.get_tokenizer(loaded.open_clip_name)
    model_cfg, digest = loaded.model_cfg, loaded.weights_digest
    model = EchoClipModel(
        clip,
        tokenizer,
        spec=spec,
        weights_digest=digest,
        model_cfg=model_cfg,
        device=dev,
        precision=precision,
        batch_size=batch_size,
    )
    log.info("loaded model %s on %s (%s)", model.identity, dev, precision)
    return model


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ModelLoadError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} requested but CUDA is not available; use device 'cpu' or 'auto'")
    return torch.device(device)


def _download_hub(repo_id: str) -> Path:
    """Config + weights of a hub repo from the HF cache, downloading what is missing; the folder holding both.

    A cached repo needs no network. Otherwise the hub is probed once first, so a machine without network
    fails in seconds with one clear message instead of minutes of retries.
    """
    if not repo_id:
        raise ModelLoadError("empty hub repo in spec; use e.g. hf-hub:mkaichristensen/echo-clip")
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    _one_log_line_per_message()
    cached = _cached_hub_folder(repo_id)
    if cached is not None:
        return cached
    offline_help = (
        f"Without network access, download the repo once elsewhere (e.g. `hf download {repo_id} --local-dir DIR`), "
        f"copy DIR here and use the model spec local-dir:DIR. {TRY_WITHOUT_DOWNLOAD}"
    )
    if constants.HF_HUB_OFFLINE:
        raise ModelLoadError(f"hf-hub:{repo_id} is not in the local cache and HF_HUB_OFFLINE is set. {offline_help}")
    unreachable = _unreachable(constants.ENDPOINT)
    if unreachable:
        raise ModelLoadError(f"cannot download hf-hub:{repo_id}: {unreachable}. {offline_help}")
    try:
        log.info("downloading hf-hub:%s (about 606 MB for EchoCLIP; cached after) ...", repo_id)
        config = Path(hf_hub_download(repo_id, CONFIG_FILE))
        for name in WEIGHT_FILES:
            try:
                hf_hub_download(repo_id, name)
                break
            except EntryNotFoundError:
                continue
        else:
            raise FileNotFoundError(f"no weights file ({' or '.join(WEIGHT_FILES)}) in the repo")
    except Exception as exc:  # any network / auth / cache failure gets the same actionable message
        raise ModelLoadError(
            f"could not download hf-hub:{repo_id} ({type(exc).__name__}: {exc}). {offline_help}"
        ) from exc
    return config.parent


def _cached_hub_folder(repo_id: str) -> Path | None:
    """The cached snapshot folder holding the config and a weights file, or None (no network used)."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo_id, CONFIG_FILE)
    if not isinstance(config, str):
        return None
    for name in WEIGHT_FILES:
        if isinstance(try_to_load_from_cache(repo_id, name), str):
            return Path(config).parent
    return None


def _unreachable(endpoint: str) -> str:
    """Why the hub endpoint cannot be reached ("" when it can, or when a proxy decides): one quick TCP probe."""
    if any(os.environ.get(v) for v in PROXY_VARIABLES):
        return ""  # the proxy may reach what this machine cannot; let the download try
    url = urllib.parse.urlsplit(endpoint)
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return ""
    except socket.gaierror as exc:
        return f"{host} cannot be resolved ({exc.strerror or exc}); this machine seems to have no network"
    except OSError as exc:
        return f"{host}:{port} is not reachable ({exc.strerror or exc})"


def _one_log_line_per_message() -> None:
    """huggingface_hub logs through a handler of its own and to the root logger: every retry twice. Keep root's."""
    hub = logging.getLogger("huggingface_hub")
    if logging.getLogger().handlers:
        for handler in list(hub.handlers):
            hub.removeHandler(handler)


def _load_dir(folder: Path, spec: str) -> _Loaded:
    """Build an open_clip model from open_clip_config.json + weights in `folder` (what save_dir writes)."""
    import open_clip

    if not (folder / CONFIG_FILE).is_file():
        raise ModelLoadError(
            f"{spec}: {folder} has no {CONFIG_FILE} (expected the files of hf-hub:mkaichristensen/echo-clip)"
        )
    weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise ModelLoadError(f"{spec}: {folder} has no weights file ({' or '.join(WEIGHT_FILES)})")
    name = f"local-dir:{folder}"
    try:
        model_cfg = json.loads((folder / CONFIG_FILE).read_text())["model_cfg"]
        # require_pretrained: open_clip would otherwise fall back to random weights silently.
        clip = open_clip.create_model(name, device="cpu", require_pretrained=True)
    except Exception as exc:
        raise ModelLoadError(f"{spec}: could not load the model from {folder} ({type(exc).__name__}: {exc})") from exc
    return _Loaded(clip, name, model_cfg, _file_digest(weights))


def _load_random(name: str) -> _Loaded:
    """Seeded random weights for a config shipped in model_configs/ (same weights on every load)."""
    import open_clip

    if name not in RANDOM_CONFIGS:
        raise ModelLoadError(
            f"unknown random model {name!r}; use one of: {', '.join('random:' + n for n in RANDOM_CONFIGS)}"
        )
    config_name = RANDOM_CONFIGS[name]
    model_cfg = json.loads((CONFIG_DIR / f"{config_name}.json").read_text())
    if config_name not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR / f"{config_name}.json")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        clip = open_clip.create_model(config_name, device="cpu")
    log.warning(
        "model random:%s has RANDOM weights (seed %d): embeddings are meaningless for medicine; "
        "use hf-hub:mkaichristensen/echo-clip or local-dir:PATH for real EchoCLIP",
        name,
        RANDOM_SEED,
    )
    return _Loaded(clip, config_name, model_cfg, _state_digest(clip))


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _state_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()
