"""Training tests run their tiny models on one torch thread (restored afterwards).

Intra-op threads do not speed up models this small, and on a shared 2-core machine OpenMP's
spinning threads made one training step 100x slower (3.3 s instead of 27 ms of CPU).
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
