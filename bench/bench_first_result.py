"""A user's cold start end to end: `Extractor.from_pretrained()` and one short receipt, timed.

    python bench/bench_first_result.py

Run it twice in fresh processes: the first run measures this machine and builds the head's
screen copy (`extractkit/_machine.py` remembers both), the second shows what every later
process pays. `EXTRACTKIT_REMEMBER=0` measures and builds in every run.
"""

import time

STARTED = time.perf_counter()

import resource  # noqa: E402

import extractkit  # noqa: E402
from extractkit._schema import load_schema  # noqa: E402

extractor = extractkit.Extractor.from_pretrained()
loaded = time.perf_counter()
result = extractor.extract("Receipt. ABC MART. 02/01/2019. TOTAL 3.50", load_schema("receipt"))
done = time.perf_counter()
print(f"load {loaded - STARTED:.2f} s, first result {done - loaded:.2f} s, total {done - STARTED:.2f} s, "
      f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB: {result!r}")
