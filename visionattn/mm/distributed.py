"""Distributed runs that end, and say which process failed, when one process dies or stops answering.

PyTorch waits for a peer in a collective operation (DDP's gradient all-reduce, a barrier, gathering
evaluation results) for the process group's timeout, 30 minutes for gloo; mmengine's CPU path passed
none, and gloo's error on expiry names no process ("Timed out waiting 1800000ms for recv operation").
What is added here, because neither has it:

- :func:`init_gloo_process_group` starts the CPU (gloo) process group with a collective timeout of
  ``env_cfg.dist_cfg.timeout`` seconds (``--dist-timeout``), :data:`DEFAULT_GLOO_TIMEOUT_S` by default,
  and a second small gloo group kept for diagnosis.
- :func:`unresponsive_peers_named` turns a failed gloo collective (timed out, connection reset or closed)
  into a :class:`~visionattn.errors.DistributedError` that names the ranks that did not answer: each
  process that sees the failure sends a message to every other over the diagnosis group and waits
  (at most :func:`diagnosis_wait_s`) for theirs; a rank that stays silent is dead, stopped or hung.
  If every rank answers, the failure was something else and its error is raised unchanged.

With torchrun (``tools/dist_train.sh``) a process that dies makes torchrun stop the others at once (its
report names the rank and exit code); a stopped or hung process holds the others until the timeout, after
which they exit with the message above and torchrun stops the silent process (SIGTERM, then SIGKILL 30 s
later). NCCL (GPUs) keeps mmengine's path: ``env_cfg.dist_cfg.timeout`` (``--dist-timeout``) becomes the NCCL
process group's timeout (PyTorch's default: 10 minutes), after which PyTorch's NCCL watchdog ends the
process, logging the collective that timed out (``TORCH_NCCL_DESYNC_DEBUG=1`` adds which ranks had not
joined it).
"""
from __future__ import annotations

import contextlib
import datetime
import re
from typing import Any, Iterator

import torch
import torch.distributed as torch_dist

from visionattn.errors import DistributedError

__all__ = ['DEFAULT_GLOO_TIMEOUT_S', 'collective_timeout_s', 'diagnosis_wait_s', 'init_gloo_process_group',
           'unresponsive_peers_named']

#: Collective timeout of CPU (gloo) runs without ``env_cfg.dist_cfg.timeout``: long enough for rank 0 to
#: save a checkpoint or compute COCO metrics while the others wait, short enough that a hung run ends.
DEFAULT_GLOO_TIMEOUT_S = 300.0

_COMMUNICATION_FAILURE = re.compile(r'gloo|timed out|connection (reset|closed|refused)|pair closure|broken pipe',
                                    re.IGNORECASE)


def collective_timeout_s(dist_cfg: dict | None) -> float:
    """The collective timeout (seconds) of a CPU run: ``dist_cfg['timeout']`` or :data:`DEFAULT_GLOO_TIMEOUT_S`."""
    timeout = (dist_cfg or {}).get('timeout')
    return DEFAULT_GLOO_TIMEOUT_S if timeout is None else float(timeout)


def diagnosis_wait_s(timeout_s: float) -> float:
    """How long a process that saw a collective fail waits for each other process to answer: half the
    collective timeout, at most 30 s (the others hit the same failure within moments of each other)."""
    return min(timeout_s / 2, 30.0)


def init_gloo_process_group(dist_cfg: dict | None) -> Any:
    """Start the default gloo process group (``env://``, as torchrun sets it up) with the collective
    timeout of ``dist_cfg``; returns the diagnosis group for :func:`unresponsive_peers_named`."""
    timeout_s = collective_timeout_s(dist_cfg)
    torch_dist.init_process_group(backend='gloo', timeout=datetime.timedelta(seconds=timeout_s))
    return torch_dist.new_group(backend='gloo', timeout=datetime.timedelta(seconds=diagnosis_wait_s(timeout_s)))


def _silent_peers(group: Any) -> list[int]:
    """Ranks that do not answer a message over ``group`` within its timeout (all others answer at once)."""
    rank, world_size = torch_dist.get_rank(), torch_dist.get_world_size()
    peers = [peer for peer in range(world_size) if peer != rank]
    note = torch.tensor([rank])
    sends = []  # kept until the answers are in: the note must outlive its sends
    for peer in peers:
        with contextlib.suppress(RuntimeError):  # a dead peer refuses the message; its answer is missing too
            sends.append(torch_dist.isend(note, peer, group=group))
    silent = []
    for peer in peers:
        try:
            torch_dist.irecv(torch.empty(1, dtype=note.dtype), peer, group=group).wait()
        except RuntimeError:
            silent.append(peer)
    return silent


def _is_communication_failure(err: BaseException) -> bool:
    return isinstance(err, torch_dist.DistError) or (
        isinstance(err, RuntimeError) and bool(_COMMUNICATION_FAILURE.search(str(err))))


@contextlib.contextmanager
def unresponsive_peers_named(group: Any, timeout_s: float) -> Iterator[None]:
    """Turn a failed collective operation into a :class:`DistributedError` naming the ranks that did not answer.

    ``group`` is the diagnosis group of :func:`init_gloo_process_group` (``None``: not distributed on CPU,
    errors pass unchanged); ``timeout_s`` the collective timeout, quoted in the message.
    """
    try:
        yield
    except RuntimeError as err:
        if group is None or not _is_communication_failure(err):
            raise
        silent = _silent_peers(group)
        if not silent:
            raise
        first_line = re.sub(r'^\[[^\]]*\]\s*', '', str(err).strip().splitlines()[0])
        who = f'rank {silent[0]}' if len(silent) == 1 else f'ranks {", ".join(map(str, silent))}'
        raise DistributedError(
            f'{who} of this distributed run did not answer: a collective operation failed on rank '
            f'{torch_dist.get_rank()} ("{first_line}") and {who} then stayed silent for '
            f'{diagnosis_wait_s(timeout_s):g} s. It died, was stopped, hangs (e.g. in data loading or on a stalled '
            f'file system) or its machine is unreachable; its own output says more. If it is only slow (e.g. one '
            f'process evaluating much longer than the others), raise the collective timeout ({timeout_s:g} s) with '
            f'--dist-timeout SECONDS (env_cfg.dist_cfg.timeout).') from err
