"""Suite-wide settings: tests run on a shared 2-core machine, one torch thread each."""

import torch

torch.set_num_threads(1)
