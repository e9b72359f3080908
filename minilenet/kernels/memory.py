"""glibc's malloc tuned to keep freed memory for the next training step.

glibc's malloc serves blocks larger than its mmap threshold (128 KiB at
first) with fresh pages from the OS and hands them back when they are freed,
so every training step page-faulted its activations in again: a batch of 64
lost 8% of its time to that with one thread and 18% with two (the faults of
both threads queue on one lock). These settings make such blocks come from
the heap and stay there for the next step, up to the trim threshold of free
memory kept: 96 MiB holds what an inference batch of 1000 frees and takes
again (at 64 MiB a PyTorch model in the same process fell from 29,000 to
18,000 images/s there, and at 32 MiB minilenet halved), and it adds nothing
to a training run's peak memory (128 MiB added 27 MiB). Elsewhere than glibc
nothing is changed.

``kernels.get`` applies them when it first loads a kernel module, so a process
that runs no minilenet kernel keeps glibc's defaults.
"""
import ctypes

#: mallopt option numbers and values (glibc's malloc.h).
MALLOC_SETTINGS = {"M_MMAP_THRESHOLD": (-3, 64 << 20), "M_TRIM_THRESHOLD": (-1, 96 << 20)}

#: None until ``keep_freed_memory`` runs, then whether the settings were applied.
applied = None


def keep_freed_memory():
    """Apply ``MALLOC_SETTINGS`` once per process (glibc only); True if applied."""
    global applied
    if applied is None:
        try:
            mallopt = ctypes.CDLL("libc.so.6").mallopt
        except (OSError, AttributeError):
            applied = False
        else:
            applied = all([mallopt(option, value) for option, value in MALLOC_SETTINGS.values()])
    return applied
