"""The web app and REST API of `serve.py`: FastAPI routes over one `FaceAnalyzer`.

- `settings.py`: the limits and options (from conf/serve.yaml)
- `images.py`: upload bytes -> RGB image, with size checks before the full decode
- `upload.py`: reading a request body (raw or multipart) without passing the size limit
- `rest.py`: `POST /api/analyze`, `GET /api/health`, JSON errors
- `websocket.py`: `WS /ws/live`, one stream per connection, newest frame only
- `app.py`: `create_app(analyzer, settings)`; `run.py`: build everything and run uvicorn
- `static/`: the single page (no build step, no CDN)
"""

from agegender.serve.app import create_app
from agegender.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
