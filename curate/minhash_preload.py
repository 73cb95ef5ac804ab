"""dedup.minhash's preload: load every compiled kernel from numba's cache once, in the forkserver.

Uses numpy inputs only (see curate.minhash.warmup_kernels), so forking afterwards is safe.
"""

from curate.minhash import warmup_kernels

warmup_kernels()
