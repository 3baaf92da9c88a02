"""The failures of a training that a user can act on, each raised by `fit` with a message that
names the run, the step it reached, the step checkpoint.pt holds and what to do (`qgmrn train`
and `qgmrn finetune` print it as one line, `qgmrn.commands.run_training`)."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names the step."""


class DataWorkerError(RuntimeError):
    """A DataLoader worker process died (killed, out of memory): the message names it, the step
    the training reached and the step checkpoint.pt holds, to continue from with --resume."""


class PeerProcessError(RuntimeError):
    """Another process of a multi-process run (torchrun) failed or stopped answering: the message
    names this rank, the step reached and the step checkpoint.pt holds (--resume, same number
    of processes)."""


class DeviceOutOfMemoryError(RuntimeError):
    """The accelerator ran out of memory: the message gives the batch size, image size and
    preset, the flags that lower memory, and the step checkpoint.pt holds (--resume)."""
