"""The weights tool as a library call (``scripts.download_weights`` parses arguments and calls this).

* :func:`select_assets`: the registry names a request means (NAMES, 'all', each --feature's provider);
* :func:`asset_table`: the lines of ``--list``;
* :func:`manage_weights`: forget recorded checksums, then check, convert or download-and-convert.

What the tool reports goes to an ``emit`` callback line by line (the CLI prints each as it comes: a download can
take minutes); one asset's failure goes to ``on_error`` and the others go on. The return value is the exit status.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from nerffs.errors import NerffsError
from nerffs.weights.convert import convert
from nerffs.weights.download import download
from nerffs.weights.ledger import forget, ledger_path, read_ledger
from nerffs.weights.paths import asset_path, weights_dir
from nerffs.weights.registry import DEFAULT_PROVIDERS, FEATURES, REGISTRY, lookup, names_for_features
from nerffs.weights.verify import available_features, check, check_asset

Emit = Callable[[str], None]
OnError = Callable[[BaseException], None]


@dataclass
class WeightsJob:
    """One run of the weights tool."""

    names: list[str] = field(default_factory=list)
    """Registry names to download, convert or check (resolved: :func:`select_assets`)."""
    named: list[str] = field(default_factory=list)
    """The names the user gave ('all' included): a named asset that is missing fails ``check``."""
    features: list[str] = field(default_factory=list)
    """Features asked for: one without a usable asset fails ``check``."""
    root: str | None = None
    """Weights directory (None: ``$NERFFS_WEIGHTS`` or ``~/.cache/nerffs/weights``)."""
    accept: list[str] = field(default_factory=list)
    """Assets whose restricted terms are accepted."""
    mirrors: list[str] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)
    """Assets ('all': every one) whose recorded SHA-256 is dropped first."""
    check: bool = False
    verify: bool = True
    """With ``check``: hash the files and record new ones (False: sizes only, nothing recorded)."""
    convert: bool = False
    force: bool = False
    timeout: float = 30.0
    retries: int = 5
    show_progress: bool = True


def select_assets(names: Iterable[str], features: Iterable[str], *, check: bool, root: str | None = None,
                  also_known: Iterable[str] = ()) -> list[str]:
    """The registry names ``names`` ('all': every asset) and ``features`` mean: with ``check`` every asset providing
    a feature, otherwise each feature's default asset unless an asset providing it is already present.

    Raises:
        InputError: an unknown asset (in ``names`` or ``also_known``) or feature.
    """
    names, features = list(names), list(features)
    selected = list(REGISTRY) if "all" in names else names
    for name in [*selected, *also_known]:
        lookup(name)
    providers = names_for_features(features)
    if not check:
        providers = [DEFAULT_PROVIDERS[f] for f in features
                     if not any(check_asset(REGISTRY[n], root, verify_hash=False).usable
                                for n in names_for_features([f]))]
    return list(dict.fromkeys([*selected, *providers]))


def asset_table() -> list[str]:
    """The registry as the lines of ``--list`` (default providers marked ``*``)."""
    defaults = set(DEFAULT_PROVIDERS.values())
    lines = [f"{'NAME':<24} {'SIZE':>10} {'SOURCE':<7} {'LICENCE':<8} {'FEATURES':<18} FILE"]
    for a in REGISTRY.values():
        size = f"{a.size / 1e6:.1f} MB" if a.size else "?"
        name = a.name + ("*" if a.name in defaults else "")
        lines.append(f"{name:<24} {size:>10} {'url' if a.urls else 'manual':<7} "
                     f"{'accept' if a.needs_acceptance else 'open':<8} {','.join(a.features):<18} {a.filename}")
    lines += ["", "* default asset of its features (--feature). LICENCE 'accept': needs --accept-licence NAME. "
                  "SOURCE 'manual': obtain by hand (the download prints how)."]
    return lines


def manage_weights(job: WeightsJob, emit: Emit, on_error: OnError) -> int:
    """Forget the recorded checksums ``job.forget``, then check (``job.check``), convert what is present
    (``job.convert`` without names) or download (and convert) ``job.names``.

    Returns:
        0, or 1 when an asset failed (a download or conversion, or ``check`` found a corrupt or changed file, a
        named asset missing or a feature unavailable).

    Raises:
        LedgerError: the checksum ledger is unreadable (before anything else happens).
    """
    if job.forget:
        _forget(job, emit)
    if job.check:
        return _check(job, emit)
    if not job.names and job.convert:
        return _each(job, [n for n in REGISTRY if asset_path(n, job.root).is_file()], emit, on_error, fetch=False)
    return _each(job, job.names, emit, on_error, fetch=True)


def _check(job: WeightsJob, emit: Emit) -> int:
    statuses = check(job.root, verify_hash=job.verify, names=job.names or None, record_new=job.verify)
    emit(f"weights directory: {weights_dir(job.root)}")
    emit(f"{'NAME':<24} {'STATE':<8} {'FEATURES':<18} PATH")
    for s in statuses:
        emit(f"{s.name:<24} {s.state:<8} {','.join(s.features):<18} {s.path}")
    for s in statuses:
        if s.state != "valid":
            emit(f"  {s.name}: {s.detail}")
    for s in statuses:
        if s.newly_recorded:
            emit(f"{s.name}: sha256 {s.sha256} recorded in {ledger_path(job.root)} (first check)")
    features = available_features(statuses)
    emit("available features: " + (", ".join(f for f, ok in features.items() if ok) or "none"))
    for feature, ok in features.items():
        if not ok:
            emit(f"  unavailable: {feature} ({FEATURES.get(feature, '')})")
    named = set() if "all" in job.named else set(job.named)
    failed = [s.name for s in statuses
              if s.state in ("corrupt", "changed") or (s.name in named and s.state == "missing")]
    failed += [f for f in job.features if not features.get(f, False)]
    return 1 if failed else 0


def _each(job: WeightsJob, names: list[str], emit: Emit, on_error: OnError, *, fetch: bool) -> int:
    """Download (when ``fetch``) and convert (``job.convert``, or always without ``fetch``) each asset; a failure
    is reported and the next asset goes on."""
    status = 0
    for name in names:
        try:
            if fetch:
                _fetch(job, name, emit)
            if job.convert or not fetch:
                converted = convert(name, job.root, force=job.force)
                emit(f"{name}: converted -> {converted}" if converted else f"{name}: used as it is")
        except (NerffsError, OSError) as exc:
            on_error(exc)
            status = 1
    return status


def _fetch(job: WeightsJob, name: str, emit: Emit) -> None:
    filename = REGISTRY[name].filename
    known = read_ledger(job.root).get(filename)
    path = download(name, job.root, accept_licences=job.accept, mirrors=job.mirrors, timeout=job.timeout,
                    show_progress=job.show_progress, retries=job.retries, force=job.force)
    entry = read_ledger(job.root).get(filename)
    emit(f"{name}: {path}")
    if entry is not None:
        how = (f"matches the one recorded {known.recorded}" if known is not None
               else f"recorded in {ledger_path(job.root)}")
        emit(f"{name}: sha256 {entry.sha256} ({how})")


def _forget(job: WeightsJob, emit: Emit) -> None:
    assets = list(REGISTRY.values()) if "all" in job.forget else [REGISTRY[n] for n in job.forget]
    dropped = forget(assets, job.root)
    for asset in assets:
        state = "dropped" if asset.name in dropped else "had no record"
        emit(f"{asset.name}: recorded sha256 {state} ({ledger_path(job.root)})")
