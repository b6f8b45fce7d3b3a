"""The web app and REST API: `python serve.py ckpt=PATH|latest [port=8000] [host=127.0.0.1]`.

Open http://127.0.0.1:8000/ for live age and gender from the browser's webcam, or
`curl -F image=@photo.jpg http://127.0.0.1:8000/api/analyze`. Options are in conf/serve.yaml
(detector=, max_upload_mb=, max_pixels=, max_clients=, ...). A missing checkpoint or a busy
port ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from agegender.errors import report_user_errors
from agegender.serve.run import run_from_config


@hydra.main(config_path="conf", config_name="serve", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> None:
    run_from_config(OmegaConf.to_container(cfg, resolve=True))


if __name__ == "__main__":
    main()
