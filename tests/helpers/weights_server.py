"""An HTTP server on 127.0.0.1 that a test starts and stops, serving the files the test publishes on it."""

import http.server
import threading


class WeightsServer:
    """Serves ``files`` (URL path -> bytes) on a free local port; a path ending in ``/cut.weights.h5`` sends half
    of the bytes it promises, as a connection cut midway would.

    Example: ``with WeightsServer() as server: url = server.publish("/a/model.safetensors", body)``
    """

    def __init__(self):
        self.files = {}
        files = self.files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                body = files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                cut = self.path.endswith("/cut.weights.h5")
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if cut else body)

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def publish(self, path, body):
        """Serves ``body`` at ``path`` from now on; returns its URL."""
        self.files[path] = body
        return f"{self.url}{path}"

    def __enter__(self):
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info):
        self._httpd.shutdown()
        self._httpd.server_close()
