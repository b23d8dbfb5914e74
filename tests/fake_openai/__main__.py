"""Run the fake server: ``python -m tests.fake_openai --port 0 [--api-key KEY] [--config JSON]``.

Prints ``LISTENING <port>`` once ready, then serves until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from ._server import make_server


def _stop(signum, frame):
    raise SystemExit(0)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tests.fake_openai",
        description="An OpenAI-compatible embeddings server for offline tests (127.0.0.1).",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", help="key clients must send (default sk-fake-skembed-0000)")
    parser.add_argument("--config", default="{}", help="JSON object, as POST /control takes")
    args = parser.parse_args(argv)
    try:
        config = json.loads(args.config)
        if args.api_key is not None:
            config = {**config, "api_key": args.api_key}
        server = make_server(args.port, config)
    except (ValueError, TypeError) as error:
        parser.error(f"invalid --config: {error}")
    signal.signal(signal.SIGTERM, _stop)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
