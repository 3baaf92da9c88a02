"""A DataLoader worker that raises must not hang the process at exit.

The package's workers ignore SIGTERM (`ignore_interrupts`: a Ctrl-C or `pkill -f` is for the
main process to act on), so multiprocessing's exit handler, which terminates and then joins
them, used to wait forever once an exception from a worker left the training loop with its
traceback still holding the loader's iterator: the process printed the traceback and hung.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import torch
    from torch.utils.data import DataLoader, Dataset

    from qgmrn.data.dataset import closing_loader, ignore_interrupts


    class Failing(Dataset):
        def __len__(self):
            return 100

        def __getitem__(self, i):
            if i == 5:
                raise RuntimeError("bad item 5")
            return torch.zeros(1)


    loader = DataLoader(Failing(), batch_size=None, num_workers=1,
                        worker_init_fn=ignore_interrupts)
    for batch in {wrap}(loader):
        pass
    """
)


def _run(wrap: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(wrap=wrap)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_exception_in_a_worker_ends_the_process():
    proc = _run("closing_loader")
    assert proc.returncode == 1
    assert "bad item 5" in proc.stderr
