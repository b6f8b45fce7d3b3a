"""Train one phase: `python train.py phase=frozen`, then `python train.py phase=finetune`.

`python train.py resume=RUN_DIR` continues a killed run from its last.ckpt, with the run's
own config (overrides given with it win).
"""

from agegender.cli import train

if __name__ == "__main__":
    train()
