"""The web app and REST API: `python serve.py ckpt=PATH|latest [port=8000] [host=127.0.0.1]`.

Open http://127.0.0.1:8000/ for live age and gender from the browser's webcam, or
`curl -F image=@photo.jpg http://127.0.0.1:8000/api/analyze`. Options are in conf/serve.yaml
(detector=, max_upload_mb=, max_pixels=, max_clients=, ...). A missing checkpoint or a busy
port ends with one line on stderr and exit code 2.
"""

from agegender.cli import serve

if __name__ == "__main__":
    serve()
