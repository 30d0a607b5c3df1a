"""Checkpoint files: the one checked way the project reads them, compares them with a model and writes them.

Why not ``torch.load`` / safetensors / mmengine / timm directly: safe loading (``weights_only=True``) reports
a damaged or foreign file as a raw ``PytorchStreamReader``, ``EOFError``, ``KeyError`` or ``UnpicklingError``
traceback that does not say what is wrong with the file; mmengine and timm load state dicts non-strictly, so
the checkpoint of another model silently loads whatever happens to match; and mmengine writes a checkpoint in
place, so a kill during the save leaves a truncated file. Here:

- :func:`read_checkpoint` loads safely only (tensors, plain containers and numbers, and the few mmengine log
  objects that checkpoints saved by mmengine's Runner hold) and turns every failure into one
  :class:`~visionattn.errors.CheckpointError` line: empty, truncated or damaged, not a checkpoint (and what
  the file looks like instead), or which object safe loading refused and why.
- :func:`verify_checkpoint` checks that a file is complete without unpickling it (resume picks with it).
- :func:`compare_state_dicts` / :func:`load_state_dict_checked`: strict by default; a mismatch stops with a
  short report (counts, first keys, what model the checkpoint looks like it came from, see
  :func:`describe_checkpoint`); non-strict loads the matching tensors and logs the same report.
- :func:`write_atomically`: a file appears under its name only once it is complete (temporary file, fsync,
  rename), so a crash never leaves a partial file where a complete one is expected.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Union

import torch
from torch import nn

from .errors import CheckpointError, MissingFileError

__all__ = ['read_checkpoint', 'load_checkpoint_file', 'state_dict_from', 'verify_checkpoint', 'mmengine_types_allowed',
           'KeyReport', 'compare_state_dicts', 'load_state_dict_checked', 'mismatch_message', 'describe_checkpoint',
           'write_atomically', 'abandoned_partial_files']

PathLike = Union[str, os.PathLike]
_logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
_ZIP_MAGIC = b'PK\x03\x04'
_OTHER_FORMATS = (
    (b'\x89PNG', 'a PNG image'), (b'\xff\xd8\xff', 'a JPEG image'), (b'GIF8', 'a GIF image'),
    (b'II*\x00', 'a TIFF image'), (b'MM\x00*', 'a TIFF image'), (b'\x1f\x8b', 'a gzip archive (unpack it first)'),
    (b'<', 'a web page or XML file (a download that returned a page instead of the file?)'),
    (b'{', 'a JSON file'), (b'version https://git-lfs', 'a Git LFS pointer (run `git lfs pull` to fetch the file)'))
# Modules whose functions run code or touch the system when a pickle calls them.
_CODE_MODULES = ('os', 'posix', 'nt', 'subprocess', 'sys', 'shutil', 'socket', 'runpy', 'importlib', 'pty',
                 'code', 'webbrowser', 'ctypes', 'multiprocessing', 'builtins', '__builtin__', 'operator')


def _history_buffer_method(owner: Any, name: str) -> Any:
    """Stands in for ``getattr`` while unpickling: mmengine's HistoryBuffer pickles its statistics methods as
    ``getattr(HistoryBuffer, 'mean')``; nothing else may be fetched that way."""
    from mmengine.logging import HistoryBuffer
    is_buffer = owner is HistoryBuffer or isinstance(owner, HistoryBuffer)
    if not is_buffer or name.startswith('_') or not callable(getattr(HistoryBuffer, name, None)):
        raise pickle.UnpicklingError(f'checkpoint asks for getattr({owner!r}, {name!r}); only public methods '
                                     "of mmengine's HistoryBuffer may be loaded that way")
    return getattr(owner, name)


def _mmengine_globals() -> list[Any]:
    """The non-tensor objects mmengine's Runner writes into its checkpoints (message hub and log buffers)."""
    try:
        import numpy as np
        from mmengine.logging import HistoryBuffer
    except ImportError:  # without mmengine no such checkpoint is expected; safe loading refuses them by name
        return []
    numpy_scalar_types = [type(np.dtype(t)) for t in ('float64', 'float32', 'int64', 'int32', 'bool')]
    return [HistoryBuffer, np.dtype, np.ndarray, np._core.multiarray.scalar, np._core.multiarray._reconstruct,
            *numpy_scalar_types, (_history_buffer_method, 'builtins.getattr'),
            (_history_buffer_method, '__builtin__.getattr')]


@contextlib.contextmanager
def mmengine_types_allowed() -> Iterator[None]:
    """Safe loading (``weights_only``) that also accepts checkpoints saved by mmengine's plain Runner.

    Only mmengine's log buffers and the numpy scalars and arrays in its log are added, and only inside the block.
    """
    with torch.serialization.safe_globals(_mmengine_globals()):
        yield


def _what_it_looks_like(head: bytes) -> str:
    for magic, name in _OTHER_FORMATS:
        if head.startswith(magic):
            return name
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError:
        return 'binary data of an unknown format'
    first_line = text.splitlines()[0][:40] if text.strip() else ''
    return f'a text file (starting {first_line!r})'


def _is_safetensors(path: Path, head: bytes) -> bool:
    if path.suffix == '.safetensors':
        return True
    header_size = int.from_bytes(head[:8], 'little')
    return len(head) > 8 and head[8:9] == b'{' and 0 < header_size < 100_000_000


def _refused_object(message: str) -> Optional[str]:
    """The global that safe loading refused, from torch's message, or None."""
    found = re.search(r'[Uu]nsupported global:? GLOBAL ([\w.]+)', message) or re.search(r'GLOBAL ([\w.]+)', message)
    return found.group(1) if found else None


def _refusal(path: Path, name: str) -> CheckpointError:
    module = name.split('.')[0]
    if module in _CODE_MODULES:
        why = 'a function that runs code or commands when the file is loaded: the file may be malicious'
    elif module == 'numpy':
        why = 'numpy objects outside tensors, which safe loading does not load'
    elif module == 'mmengine':
        why = "an mmengine object beyond the log buffers of mmengine's own checkpoints"
    else:
        why = 'a Python object that is neither a tensor nor a plain container or number'
    return CheckpointError(
        f'{path} contains objects that safe loading refuses: {name} ({why}). Only tensors, plain containers and '
        "numbers (and the log objects of mmengine's checkpoints) are loaded. If you made the file yourself and "
        "trust it, save its state dict alone: torch.save(torch.load(path, weights_only=False)['state_dict'], "
        "'clean.pth').")


def _damaged(path: Path, size: int, detail: str) -> CheckpointError:
    return CheckpointError(f'{path} is truncated or damaged ({size} bytes; {detail}): its save did not finish or '
                           'the copy is incomplete. Use an earlier checkpoint, or copy or download the file again.')


def _read_safetensors(path: Path, size: int) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise _damaged(path, size, f'safetensors: {err}') from err


def read_checkpoint(path: PathLike, map_location: Any = 'cpu') -> Any:
    """The object in a ``.pth``/``.pt``/``.safetensors`` file, loaded safely; every failure is a CheckpointError.

    Refused: anything that is not a tensor, a plain container, a number or a string, except the log objects of
    checkpoints saved by mmengine's Runner (:func:`mmengine_types_allowed`).
    """
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f'checkpoint {path} does not exist')
    if path.is_dir():
        raise CheckpointError(f'checkpoint {path} is a folder; give the checkpoint file in it')
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f'{path} is empty (0 bytes): its save did not finish (an interrupted run or a full '
                              'disk). Use an earlier checkpoint, or save or download it again.')
    with open(path, 'rb') as f:
        head = f.read(64)
    if _is_safetensors(path, head):
        if len(head) > 8 and head[8:9] != b'{':
            raise CheckpointError(f'{path} is not a safetensors file: it looks like {_what_it_looks_like(head)}.')
        return _read_safetensors(path, size)
    if head.startswith(_ZIP_MAGIC):
        _check_zip(path, size, check_data=False)
    elif not head.startswith(b'\x80'):  # neither torch's zip format nor its legacy pickle format
        raise CheckpointError(f'{path} is not a PyTorch checkpoint: it looks like {_what_it_looks_like(head)}.')
    try:
        with mmengine_types_allowed():
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = _refused_object(str(err))
        if refused:
            raise _refusal(path, refused) from err
        raise _damaged(path, size, 'its pickled data cannot be read') from err
    except EOFError as err:
        raise _damaged(path, size, 'it ends early') from err
    except RuntimeError as err:  # torch's readers of both formats; other RuntimeErrors (devices) pass through
        if any(marker in str(err) for marker in ('PytorchStreamReader', 'zip archive', 'EOF', 'corrupt')):
            raise _damaged(path, size, str(err).split('.')[0]) from err
        raise


def _check_zip(path: Path, size: int, check_data: bool) -> None:
    """Raise unless ``path`` is a complete PyTorch zip checkpoint (``check_data``: every record's CRC too)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            broken = archive.testzip() if check_data else None
    except (zipfile.BadZipFile, OSError) as err:
        raise _damaged(path, size, f'not a complete zip archive: {err}') from err
    if broken is not None:
        raise _damaged(path, size, f'record {broken} fails its checksum')
    if not any(name.endswith('data.pkl') for name in names):
        raise CheckpointError(f'{path} is a zip archive but not a PyTorch checkpoint (no data.pkl among '
                              f'{len(names)} entries, e.g. {names[:3]}).')


def verify_checkpoint(path: PathLike) -> None:
    """Raise CheckpointError unless ``path`` is a complete checkpoint; checksums only, nothing is unpickled.

    What a crash or a full disk leaves (an empty or truncated file) is found at the cost of reading the file once.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f'checkpoint {path} does not exist')
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f'{path} is empty (0 bytes): its save did not finish')
    with open(path, 'rb') as f:
        head = f.read(64)
    if head.startswith(_ZIP_MAGIC):
        _check_zip(path, size, check_data=True)
    else:
        read_checkpoint(path)


_STATE_DICT_KEYS = ('model', 'state_dict', 'model_ema')  # official releases wrap in 'model', mmengine in 'state_dict'


def state_dict_from(checkpoint: Any, source: str = 'the checkpoint') -> dict[str, Any]:
    """The state dict in ``checkpoint``: bare, or wrapped in ``model`` / ``state_dict`` / ``model_ema``, with the
    ``module.`` / ``_orig_mod.`` prefixes of DataParallel and ``torch.compile`` removed (timm's
    ``clean_state_dict``)."""
    from timm.models import clean_state_dict
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f'{source} holds a {type(checkpoint).__name__}, not a state dict')
    for key in _STATE_DICT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            state = dict(checkpoint[key])
            break
    else:
        state = dict(checkpoint)
    if not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f'{source} holds no tensors (its entries: {sorted(map(str, state))[:8]}); '
                              'it is not a model checkpoint')
    return clean_state_dict(state)


def load_checkpoint_file(path: PathLike) -> dict[str, Any]:
    """The state dict of a ``.pth``/``.pt``/``.safetensors`` file, read safely (:func:`read_checkpoint`)."""
    return state_dict_from(read_checkpoint(path), str(path))


# ---------------------------------------------------------------------------------------------
# Comparing with a model
# ---------------------------------------------------------------------------------------------
def _first(keys: Any, count: int = 4) -> str:
    keys = list(keys)
    return ', '.join(keys[:count]) + (f', ... ({len(keys) - count} more)' if len(keys) > count else '')


@dataclass(frozen=True)
class KeyReport:
    """How a state dict fits a model: keys it lacks, keys the model lacks, tensors of another shape."""

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # key, checkpoint shape, model shape
    matched: int
    model_tensors: int

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        parts = []
        if self.missing:
            parts.append(f'{len(self.missing)} of the {self.model_tensors} model tensors are missing '
                         f'({_first(self.missing)})')
        if self.unexpected:
            parts.append(f'{len(self.unexpected)} tensors belong to no part of the model ({_first(self.unexpected)})')
        if self.mismatched:
            shapes = [f'{k}: checkpoint {tuple(a)}, model {tuple(b)}' for k, a, b in self.mismatched]
            parts.append(f'{len(self.mismatched)} have another shape ({_first(shapes, 2)})')
        return '; '.join(parts) if parts else f'all {self.matched} tensors match'


def compare_state_dicts(model_state: Mapping[str, Any], checkpoint_state: Mapping[str, Any]) -> KeyReport:
    """Which entries of ``checkpoint_state`` fit ``model_state`` (both key -> tensor)."""
    mismatched = tuple((k, tuple(v.shape), tuple(model_state[k].shape)) for k, v in checkpoint_state.items()
                       if k in model_state and isinstance(v, torch.Tensor) and isinstance(model_state[k], torch.Tensor)
                       and v.shape != model_state[k].shape)
    return KeyReport(missing=tuple(k for k in model_state if k not in checkpoint_state),
                     unexpected=tuple(k for k in checkpoint_state if k not in model_state),
                     mismatched=mismatched,
                     matched=sum(k in model_state for k in checkpoint_state) - len(mismatched),
                     model_tensors=len(model_state))


def mismatch_message(source: str, model_name: str, report: KeyReport, looks_like: str, strict: bool,
                     non_strict_option: str, advice: Optional[str] = None) -> str:
    """One paragraph: what does not fit, what the checkpoint looks like, what to do (``advice`` replaces the
    default advice of a strict load)."""
    head = f'{source} does not fit {model_name}: {report}.'
    origin = f' The checkpoint looks like {looks_like}.' if looks_like else ''
    if not strict:
        return f'{head}{origin} Loading only the {report.matched} matching tensors ({non_strict_option}).'
    return head + origin + ' ' + (advice or f'Use the checkpoint made for this model, or {non_strict_option} to load '
                                  f'only the {report.matched} matching tensors.')


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, Any], *, strict: bool = True,
                            source: str = 'the checkpoint', model_name: Optional[str] = None, looks_like: str = '',
                            non_strict_option: str = 'strict=False', advice: Optional[str] = None,
                            warn: Optional[Callable[[str], None]] = None) -> KeyReport:
    """Load ``state_dict`` into ``model``: strict stops on any mismatch with a short report (CheckpointError);
    non-strict logs the report and loads the tensors that fit (a tensor of another shape is skipped)."""
    report = compare_state_dicts(model.state_dict(), state_dict)
    if not report.ok:
        message = mismatch_message(source, model_name or type(model).__name__, report, looks_like, strict,
                                   non_strict_option, advice)
        if strict:
            raise CheckpointError(message)
        (warn or _logger.warning)(message)
    skipped = {k for k, _, _ in report.mismatched}
    loadable = {k: v for k, v in state_dict.items() if k not in skipped}
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:  # versions of modules' state layouts (BatchNorm), read by _load_from_state_dict
        loadable = type(state_dict)(loadable) if isinstance(state_dict, dict) else dict(loadable)
        loadable._metadata = metadata  # type: ignore[attr-defined]
    model.load_state_dict(loadable, strict=False)
    return report


_HEAD_NAMES = ('fc', 'head', 'head.fc', 'classifier', 'head.fc.fc', 'last_linear')
_ROLES = ((('backbone.', 'decode_head.'), 'an mmseg segmentor'),
          (('backbone.', 'roi_head.'), 'an mmdet two-stage detector'),
          (('backbone.', 'bbox_head.'), 'an mmdet detector'), (('backbone.', 'head.'), 'an mmpretrain classifier'))


def _config_summary(meta: Mapping[str, Any]) -> str:
    """What an mmengine checkpoint's config trained, read from its text with patterns (never executed)."""
    text = str(meta.get('cfg', ''))
    name = re.sub(r'_\d{8}_\d{6}$', '', str(meta.get('experiment_name', ''))) or 'an unnamed config'
    details = []
    models = list(dict.fromkeys(re.findall(r"model_name='([^']+)'", text)))
    if models:
        details.append(f"timm model {', '.join(models)}")
    heads = sorted(set(re.findall(r"type='(\w*(?:Head|Neck|FPN))'", text)))
    if heads:
        details.append(', '.join(heads))
    classes = sorted(set(re.findall(r'num_classes=(\d+)', text)), key=int)
    if classes:
        details.append(f"{'/'.join(classes)} classes")
    return f"the training run of config {name}" + (f" ({'; '.join(details)})" if details else '')


def _structure_summary(state: Mapping[str, Any]) -> str:
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    values = sum(v.numel() for v in tensors.values())
    tops = list(dict.fromkeys(k.split('.')[0] for k in tensors))
    role = next((name for prefixes, name in _ROLES if all(any(k.startswith(p) for k in tensors) for p in prefixes)), '')
    heads = [f'{tensors[f"{h}.weight"].shape[0]} outputs at {h}' for h in _HEAD_NAMES
             if f'{h}.weight' in tensors and tensors[f'{h}.weight'].ndim == 2]
    summary = f'{role + " " if role else ""}a state dict of {len(tensors)} tensors ({values / 1e6:.1f}M values)'
    summary += f' with top-level modules {_first(tops, 6)}'
    return summary + (f' ({heads[0]})' if heads else '')


def describe_checkpoint(checkpoint: Any, path: Optional[PathLike] = None) -> str:
    """What model ``checkpoint`` looks like it came from, for error messages (best effort, never raises)."""
    try:
        if path is not None and str(path).endswith('.safetensors'):
            from safetensors import safe_open
            with safe_open(str(path), 'pt') as f:
                metadata = f.metadata() or {}
            if metadata.get('model') or metadata.get('family'):
                return (f"visionattn's conversion of {metadata.get('source', 'a checkpoint')} for "
                        f"{metadata.get('model') or 'the ' + metadata['family'] + ' family'}")
        if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get('meta'), Mapping) \
                and 'cfg' in checkpoint['meta']:
            return _config_summary(checkpoint['meta'])
        return _structure_summary(state_dict_from(checkpoint))
    except Exception:  # a description is a courtesy: never hide the real error behind a failing one
        return ''


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
_PARTIAL = re.compile(r'^\.(?P<name>.+)\.partial-(?P<pid>\d+)$')


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def write_atomically(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` to write; afterwards it replaces ``path`` in one rename.

    The data is flushed to disk before the rename, so ``path`` is either its old self or the complete new file,
    whenever the process dies; on an error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    temporary = path.with_name(f'.{path.name}.partial-{os.getpid()}')
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, path)
        with contextlib.suppress(OSError):  # not every file system can sync a folder
            _fsync(path.parent)
    finally:
        if temporary.exists():
            temporary.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def abandoned_partial_files(folder: PathLike) -> list[Path]:
    """Temporary files of :func:`write_atomically` in ``folder`` whose writer died before finishing."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if (m := _PARTIAL.match(p.name)) and not _alive(int(m['pid'])))
