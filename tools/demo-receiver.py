#!/usr/bin/env python3
"""A webhook receiver for trying DMS by hand (README, "A tour with curl").

It answers 500 to the first delivery of each message and 200 to the next, so one run shows a
failed attempt, the retry and the success. It prints every request with its Standard Webhooks
headers. Usage: python3 tools/demo-receiver.py [PORT]   (default 4000, loopback only)
"""

import http.server
import sys

seen = set()


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        message_id = self.headers.get("webhook-id", "?")
        status = 200 if message_id in seen else 500
        seen.add(message_id)
        print(f"{status} webhook-id={message_id} webhook-signature="
              f"{self.headers.get('webhook-signature', '')[:24]}... body={body[:120]!r}",
              flush=True)
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


port = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
print(f"listening on http://127.0.0.1:{port}/", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Receiver).serve_forever()
