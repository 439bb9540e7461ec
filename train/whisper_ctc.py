"""A CTC model on Whisper's pretrained encoder: ``WhisperForCTC`` (a Hugging Face ``PreTrainedModel``).

raw 16 kHz PCM (B, S) -> log-mel (B, 80, S/160) -> Whisper encoder (B, S/320, d) -> conv head -> logits
(B, S/320, vocab). The log-mel front end is part of the model (fixed weights: a windowed DFT as a
strided convolution, the mel filter bank), so the exported graph, like the wav2vec2 ones, takes raw
samples and the runtime needs nothing else.

Whisper normalises the log-mel of a whole 30 s input by its maximum (``max(x, x.max() - 8)``), which
a stream cannot know. ``mel_normalization="fixed"`` replaces that maximum by a constant ceiling
(``mel_ceiling``, log10 power); ``"utterance"`` keeps the reference rule for measuring the difference.

Module names follow the house's searched-layer contract (``bitplan.SEARCHED_LINEAR_KINDS``): Whisper's
``self_attn.{q,k,v,out}_proj`` are ``attention.{q,k,v,out}_proj`` and ``fc1``/``fc2`` are
``feed_forward.{intermediate,output}_dense``, so the supernet, the exporter and the kernel choice
treat both families alike. ``speechmpq import-whisper`` maps a Whisper checkpoint onto these names.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms window
HOP = 160  # 10 ms mel frames; the encoder's stride-2 conv makes them 20 ms, wav2vec2's frame rate
MEL_FLOOR_BELOW_CEILING = 8.0  # Whisper's dynamic range in log10 units
MEL_NORMALIZATIONS = ("fixed", "utterance")


class WhisperCTCConfig(PretrainedConfig):
    model_type = "whisper_ctc"
    # Geometry of the front end in the terms of wav2vec2's conv stack (speechmpq.onnx_metadata reads
    # them): the STFT (400-sample window, hop 160), then conv1 (3, stride 1) and conv2 (3, stride 2):
    # 320 samples per frame, 1040 samples of receptive field.
    conv_kernel = (N_FFT, 3, 3)
    conv_stride = (HOP, 1, 2)
    feat_extract_norm = "mel"
    # The exporter's front-end cache splits a graph after a padding-free conv stack; Whisper's convs
    # (and the STFT's reflect padding) pad each window's edges, so cached frames would differ.
    frontend_cache_off_reason = "Whisper's front end pads each window's edges, so cached frames would differ"
    # The streaming window an export recommends (ms; onnx_metadata.streaming_window), chosen on
    # real-speech dev (results/streaming_sweep_whisper-{tiny,base}.md): the lowest mean streaming -
    # offline WER gap over both encoders among windows of <= 2.56 s algorithmic latency. Shorter chunks
    # lose ~2 points: the encoder sees each window's right edge as the end of its input.
    streaming_ms = {"chunk": 1280, "left": 5120, "right": 1280}
    # The names the rest of the house reads from any CTC config (transformers' own aliasing).
    attribute_map = {"hidden_size": "d_model", "num_hidden_layers": "encoder_layers",
                     "intermediate_size": "encoder_ffn_dim", "num_attention_heads": "encoder_attention_heads"}

    def __init__(
        self,
        vocab_size: int = 32,  # CTC output tokens (blank = pad_token_id)
        num_mel_bins: int = 80,  # Whisper's log-mel bins (80 for tiny..medium)
        d_model: int = 384,  # encoder width
        encoder_layers: int = 4,
        encoder_attention_heads: int = 6,
        encoder_ffn_dim: int = 1536,
        max_source_positions: int = 1500,  # positional table: 30 s at 20 ms
        layer_norm_eps: float = 1e-5,
        mel_normalization: str = "fixed",  # "fixed" (streamable) or "utterance" (Whisper's reference)
        mel_ceiling: float = 1.5,  # log10 power ceiling of the "fixed" rule; floor = ceiling - 8
        head_layers: int = 1,  # conv blocks between the encoder and the output projection
        head_dim: int = 256,  # channels of the conv head
        head_kernel: int = 5,  # conv head kernel (frames; odd: look-ahead of kernel // 2 frames per block)
        head_dropout: float = 0.1,
        layer_sum: bool = False,  # the head reads a learned softmax-weighted sum of every encoder layer
        trainable_encoder_layers: int = 0,  # the top N encoder layers (and final norm) train; rest frozen
        encoder_dropout: float = 0.0,  # dropout inside trainable encoder layers
        apply_spec_augment: bool = False,  # training only: mask log-mel spans before the encoder
        mel_time_masks: int = 2,  # time masks per utterance, each up to mel_time_mask_frames long
        mel_time_mask_frames: int = 40,  # 10 ms mel frames
        mel_freq_masks: int = 2,  # frequency masks per utterance, each up to mel_freq_mask_bins wide
        mel_freq_mask_bins: int = 15,
        source: str = "",  # where the encoder weights came from (written by the importer)
        ctc_loss_reduction: str = "mean",
        ctc_zero_infinity: bool = True,
        pad_token_id: int = 0,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        **kwargs,
    ):
        if mel_normalization not in MEL_NORMALIZATIONS:
            raise ValueError(f"mel_normalization must be one of {MEL_NORMALIZATIONS}, "
                             f"not {mel_normalization!r}")
        if d_model % encoder_attention_heads:
            raise ValueError(f"d_model {d_model} is not a multiple of {encoder_attention_heads} heads")
        if head_kernel < 1 or head_kernel % 2 == 0:
            raise ValueError(f"head_kernel must be odd and positive, not {head_kernel}")
        if not 0 <= trainable_encoder_layers <= encoder_layers:
            raise ValueError(f"trainable_encoder_layers must be in 0..{encoder_layers}")
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                         **kwargs)
        self.vocab_size = vocab_size
        self.num_mel_bins = num_mel_bins
        self.d_model = d_model
        self.encoder_layers = encoder_layers
        self.encoder_attention_heads = encoder_attention_heads
        self.encoder_ffn_dim = encoder_ffn_dim
        self.max_source_positions = max_source_positions
        self.layer_norm_eps = layer_norm_eps
        self.mel_normalization = mel_normalization
        self.mel_ceiling = mel_ceiling
        self.head_layers = head_layers
        self.head_dim = head_dim
        self.head_kernel = head_kernel
        self.head_dropout = head_dropout
        self.layer_sum = layer_sum
        self.trainable_encoder_layers = trainable_encoder_layers
        self.encoder_dropout = encoder_dropout
        self.source = source
        self.ctc_loss_reduction = ctc_loss_reduction
        self.ctc_zero_infinity = ctc_zero_infinity
        self.apply_spec_augment = apply_spec_augment  # the quantizer turns it off (and restores it)
        self.mel_time_masks, self.mel_time_mask_frames = mel_time_masks, mel_time_mask_frames
        self.mel_freq_masks, self.mel_freq_mask_bins = mel_freq_masks, mel_freq_mask_bins

    @property
    def conv_dim(self) -> tuple[int, int, int]:
        return (2 * (N_FFT // 2 + 1), self.d_model, self.d_model)


def mel_filters(num_mel_bins: int) -> np.ndarray:
    """Whisper's filter bank (Slaney scale and norm, 0-8 kHz), (N_FFT // 2 + 1, num_mel_bins)."""
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=num_mel_bins,
                           min_frequency=0.0, max_frequency=8000.0, sampling_rate=SAMPLE_RATE,
                           norm="slaney", mel_scale="slaney").astype(np.float32)


def frame_count(samples):
    """Encoder frames for SAMPLES of input: S // 160 mel frames, then the stride-2 conv (ceil)."""
    return (samples // HOP + 1) // 2


class LogMel(nn.Module):
    """Whisper's log-mel spectrogram of raw samples, (B, S) -> (B, num_mel_bins, S // 160).

    The periodic Hann-windowed DFT is a Conv1d with fixed cos/sin kernels (stride 160, reflect padding
    of 200 on both sides as ``torch.stft(center=True)``), so it exports as plain ONNX ops."""

    def __init__(self, config: WhisperCTCConfig):
        super().__init__()
        self.normalization = config.mel_normalization
        self.ceiling = float(config.mel_ceiling)
        self.mel_bins = config.num_mel_bins
        self.register_buffer("dft", torch.empty(2 * (N_FFT // 2 + 1), 1, N_FFT), persistent=False)
        self.register_buffer("filters", torch.empty(self.mel_bins, N_FFT // 2 + 1), persistent=False)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        """Fill the fixed weights (not saved: from_pretrained calls this after loading)."""
        bins, n = N_FFT // 2 + 1, np.arange(N_FFT)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)  # periodic Hann
        angle = 2 * np.pi * np.outer(np.arange(bins), n) / N_FFT
        basis = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window])  # (2 * bins, N_FFT)
        self.dft = torch.from_numpy(basis.astype(np.float32))[:, None, :].to(self.dft.device)
        self.filters = torch.from_numpy(mel_filters(self.mel_bins).T.copy()).to(self.filters.device)

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(samples[:, None, :], (N_FFT // 2, N_FFT // 2), mode="reflect")
        spectrum = nn.functional.conv1d(padded, self.dft, stride=HOP)[..., :-1]  # (B, 2 * bins, S // 160)
        real, imag = spectrum.chunk(2, dim=1)
        power = real * real + imag * imag
        log_mel = torch.clamp(torch.matmul(self.filters, power), min=1e-10).log10()
        if self.normalization == "utterance":
            ceiling = log_mel.amax(dim=(1, 2), keepdim=True)
        else:
            ceiling = torch.full_like(log_mel[:, :1, :1], self.ceiling)
        log_mel = torch.maximum(log_mel, ceiling - MEL_FLOOR_BELOW_CEILING)
        return (log_mel + 4.0) / 4.0


class Attention(nn.Module):
    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, d_model // heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor | None) -> torch.Tensor:
        batch, frames, _ = x.shape

        def split(t):  # (B, T, d) -> (B, heads, T, head_dim)
            return t.view(batch, frames, self.heads, self.head_dim).transpose(1, 2)

        q = split(self.q_proj(x) * self.head_dim**-0.5)
        scores = torch.matmul(q, split(self.k_proj(x)).transpose(-1, -2))  # (B, heads, T, T)
        if key_bias is not None:
            scores = scores + key_bias
        context = torch.matmul(scores.softmax(dim=-1), split(self.v_proj(x)))
        return self.out_proj(context.transpose(1, 2).reshape(batch, frames, -1))


class FeedForward(nn.Module):
    def __init__(self, d_model: int, ffn_dim: int):
        super().__init__()
        self.intermediate_dense = nn.Linear(d_model, ffn_dim)  # Whisper's fc1
        self.output_dense = nn.Linear(ffn_dim, d_model)  # Whisper's fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(nn.functional.gelu(self.intermediate_dense(x)))


class EncoderLayer(nn.Module):
    """Pre-LN transformer block, as Whisper's."""

    def __init__(self, config: WhisperCTCConfig):
        super().__init__()
        self.attention_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.attention = Attention(config.d_model, config.encoder_attention_heads)
        self.final_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config.d_model, config.encoder_ffn_dim)
        self.dropout = nn.Dropout(config.encoder_dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor | None) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_layer_norm(x), key_bias))
        return x + self.dropout(self.feed_forward(self.final_layer_norm(x)))


class WhisperCTCEncoder(nn.Module):
    """Whisper's audio encoder on a log-mel of any length up to 30 s (no padding to 30 s)."""

    def __init__(self, config: WhisperCTCConfig):
        super().__init__()
        d = config.d_model
        self.conv1 = nn.Conv1d(config.num_mel_bins, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(config.max_source_positions, d)
        self.embed_positions.weight.requires_grad_(False)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.encoder_layers))
        self.layer_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)

    def embed(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, mels, 2T) -> (B, T, d): the two convolutions plus positions."""
        x = nn.functional.gelu(self.conv2(nn.functional.gelu(self.conv1(log_mel)))).transpose(1, 2)
        if not torch.jit.is_tracing() and x.shape[1] > self.embed_positions.num_embeddings:
            limit = self.embed_positions.num_embeddings
            raise ValueError(f"input of {x.shape[1]} frames; this encoder's positions end at {limit} "
                             f"({limit / 50:.0f} s)")
        return x + self.embed_positions.weight[: x.shape[1]]


class WhisperCTCPreTrainedModel(PreTrainedModel):
    config_class = WhisperCTCConfig
    base_model_prefix = "whisper"
    main_input_name = "input_values"

    def _get_feat_extract_output_lengths(self, lengths):
        """Frames for LENGTHS samples (the name and contract of transformers' wav2vec2 models)."""
        return frame_count(lengths)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear | nn.Conv1d):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            module.weight.data.copy_(sinusoids(*module.weight.shape))


def sinusoids(length: int, channels: int) -> torch.Tensor:
    """Whisper's fixed positional table, (length, channels)."""
    increment = math.log(10000) / (channels // 2 - 1)
    scales = torch.exp(-increment * torch.arange(channels // 2))
    angle = torch.arange(length)[:, None] * scales[None, :]
    return torch.cat([angle.sin(), angle.cos()], dim=1)


def spec_augment(log_mel: torch.Tensor, config: WhisperCTCConfig) -> torch.Tensor:
    """SpecAugment's masks on (B, mels, frames): random time spans and mel bands set to the floor
    (the normalised value of silence, -1 after Whisper's scaling of ceiling - 8)."""
    floor = (config.mel_ceiling - MEL_FLOOR_BELOW_CEILING + 4.0) / 4.0
    batch, bins, frames = log_mel.shape
    keep = torch.ones_like(log_mel, dtype=torch.bool)
    for row in range(batch):
        for count, width, size, axis in ((config.mel_time_masks, config.mel_time_mask_frames, frames, 1),
                                         (config.mel_freq_masks, config.mel_freq_mask_bins, bins, 0)):
            for _ in range(count):
                span = int(torch.randint(0, width + 1, ()))
                start = int(torch.randint(0, max(1, size - span), ()))
                keep[row].narrow(axis, start, span).fill_(False)
    return torch.where(keep, log_mel, torch.full_like(log_mel, floor))


class WhisperCTCModel(WhisperCTCPreTrainedModel):
    """Front end + encoder: raw samples -> encoder states (B, T, d)."""

    def __init__(self, config: WhisperCTCConfig):
        super().__init__(config)
        self.frontend = LogMel(config)
        self.encoder = WhisperCTCEncoder(config)
        self.post_init()

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None):
        frozen = self.config.encoder_layers - self.config.trainable_encoder_layers
        key_bias = None
        if attention_mask is not None:
            valid = frame_count(attention_mask.sum(-1))  # (B,)
            frames = frame_count(torch.tensor(input_values.shape[-1]))
            keep = torch.arange(int(frames), device=input_values.device)[None] < valid[:, None]
            key_bias = torch.zeros(keep.shape, dtype=input_values.dtype, device=keep.device)
            key_bias = key_bias.masked_fill(~keep, torch.finfo(key_bias.dtype).min)[:, None, None, :]
        with torch.set_grad_enabled(torch.is_grad_enabled() and frozen == 0):
            log_mel = self.frontend(input_values)
            if self.training and self.config.apply_spec_augment:
                log_mel = spec_augment(log_mel, self.config)
            x = self.encoder.embed(log_mel)
        states = []
        for index, layer in enumerate(self.encoder.layers):
            with torch.set_grad_enabled(torch.is_grad_enabled() and index >= frozen):
                x = layer(x, key_bias)
            states.append(x)
        last = self.encoder.layer_norm(x)
        if not self.config.layer_sum:
            return last
        # every layer's output, scale-free (the last with the encoder's own norm): (L, B, T, d)
        normed = [nn.functional.layer_norm(state, state.shape[-1:]) for state in states[:-1]]
        return torch.stack([*normed, last])


class WhisperForCTC(WhisperCTCPreTrainedModel):
    """``WhisperCTCModel`` + a small conv head + the CTC projection; ``forward`` as ``Wav2Vec2ForCTC``."""

    def __init__(self, config: WhisperCTCConfig):
        super().__init__(config)
        self.whisper = WhisperCTCModel(config)
        blocks, channels = [], config.d_model
        for _ in range(config.head_layers):
            blocks += [nn.Conv1d(channels, config.head_dim, config.head_kernel,
                                 padding=config.head_kernel // 2),
                       nn.GELU(), nn.Dropout(config.head_dropout)]
            channels = config.head_dim
        self.head = nn.Sequential(*blocks)
        if config.layer_sum:  # softmax weights over the encoder layers' outputs (SUPERB-style probing)
            self.layer_weights = nn.Parameter(torch.zeros(config.encoder_layers))
        self.lm_head = nn.Linear(channels, config.vocab_size)
        self.post_init()
        self.freeze_encoder()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        model = super().from_pretrained(*args, **kwargs)
        model.whisper.frontend.reset_buffers()  # built on the meta device: never filled
        model.freeze_encoder()  # loading re-creates the parameters, trainable
        return model

    def set_trainable_encoder_layers(self, layers: int) -> None:
        """Let the top LAYERS encoder layers (0..encoder_layers) train, freeze the rest."""
        if not 0 <= layers <= self.config.encoder_layers:
            raise ValueError(f"trainable_encoder_layers must be in 0..{self.config.encoder_layers}, "
                             f"not {layers}")
        self.config.trainable_encoder_layers = layers
        self.freeze_encoder()

    def freeze_encoder(self) -> None:
        """Freeze all but the top ``trainable_encoder_layers`` encoder layers (front end always)."""
        trainable = self.config.trainable_encoder_layers
        frozen = self.config.encoder_layers - trainable
        for name, parameter in self.whisper.named_parameters():
            index = name.split(".")[2] if name.startswith("encoder.layers.") else None
            parameter.requires_grad_(
                (index is not None and int(index) >= frozen) or (name.startswith("encoder.layer_norm")
                                                                 and trainable > 0))

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **_) -> CausalLMOutput:
        states = self.whisper(input_values, attention_mask)  # (B, T, d), or (L, B, T, d) with layer_sum
        if self.config.layer_sum:
            states = torch.einsum("l,lbtd->btd", self.layer_weights.softmax(0), states)
        logits = self.lm_head(self.head(states.transpose(1, 2)).transpose(1, 2))  # (B, T, vocab)
        loss = None
        if labels is not None:
            loss = self._ctc_loss(logits, labels, attention_mask, input_values.shape[-1])
        return CausalLMOutput(loss=loss, logits=logits)

    def _ctc_loss(self, logits, labels, attention_mask, samples: int) -> torch.Tensor:
        lengths = (attention_mask.sum(-1) if attention_mask is not None
                   else torch.full((logits.shape[0],), samples, device=logits.device))
        input_lengths = frame_count(lengths).long()
        label_mask = labels >= 0
        log_probs = nn.functional.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
        with torch.backends.cudnn.flags(enabled=False):
            return nn.functional.ctc_loss(
                log_probs, labels.masked_select(label_mask), input_lengths, label_mask.sum(-1),
                blank=self.config.pad_token_id, reduction=self.config.ctc_loss_reduction,
                zero_infinity=self.config.ctc_zero_infinity)
